"""A plugin detector's code is part of its keys (issue 26): editing it between two runs into the same results folder
retrains and rescores it, while the detectors shipped in bench keep their cells."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import linked_sources

from bench.cli import main
from bench.provenance import code_identity


def _install_plugin(tmp_path: Path) -> Path:
    """`bench new detector my-cnn`, pip-installed into a folder of its own; returns that folder."""
    created = CliRunner().invoke(main, ["new", "detector", "my-cnn", "--dir", str(tmp_path)])
    assert created.exit_code == 0, created.output
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), created.output.strip()], check=True, capture_output=True)
    return site


def _records(results: Path) -> dict[str, dict]:
    """The folder's records by key."""
    return {p.stem: json.loads(p.read_text()) for p in (results / "records").glob("*.json")}


@pytest.mark.slow
def test_editing_a_plugin_recomputes_its_cells_and_keeps_the_builtin_ones(cifake_dir, tmp_path):
    site = _install_plugin(tmp_path)
    cache, results = linked_sources(cifake_dir, tmp_path / "cache"), tmp_path / "results"

    def run(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "bench", "run", "--suite", str(tmp_path / "bench-my-cnn" / "suite.yaml"),
                   "--data-dir", str(cache), "--results", str(results), "--train-limit", "200", "--test-limit", "100",
                   "--epochs", "1", "--bootstrap", "20", "--threads", "1", "--no-progress", *extra]
        done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(site)},
                              capture_output=True, text=True)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        return done

    assert "2 cells computed, 0 reused" in run().stderr
    first = _records(results)
    by_detector = {r["detector"]: r for r in first.values()}
    code = by_detector["my-cnn"]["detector_code"]
    assert code["distribution"] == "bench-my-cnn" and code["version"] == "0.1.0" and len(code["sha256"]) == 64
    assert by_detector["lenet"]["detector_code"] is None  # shipped in bench: named by the commit, keys as they were
    assert "0 cells computed, 2 reused" in run().stderr

    plugin = site / "bench_my_cnn" / "detector.py"  # the file that runs, as with an editable install
    source = plugin.read_text()
    edited = source.replace("nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),\n"
                            "        nn.Conv2d(32, 64,",
                            "nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),\n"
                            "        nn.Conv2d(16, 64,")
    assert edited != source
    plugin.write_text(edited)
    assert "1 cells computed, 1 reused" in run().stderr  # the plugin's cell, not LeNet's
    second = _records(results)
    [new] = [second[key] for key in second.keys() - first.keys()]  # a new key: the edited plugin's cell
    assert new["detector"] == "my-cnn" and new["detector_code"]["sha256"] != code["sha256"]
    assert new["training"]["checkpoint"] != by_detector["my-cnn"]["training"]["checkpoint"]
    assert all(second[key] == record for key, record in first.items() if record["detector"] == "lenet")
    superseded = results / "records" / "superseded" / f"{by_detector['my-cnn']['key']}.json"
    assert superseded.is_file()  # the edited plugin's old record is kept aside, so the folder still renders
    rendered = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "render", str(results)],
                              env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr

    forced = run("--retrain")
    assert "2 cells computed, 0 reused" in forced.stderr and forced.stderr.count("1 trained") == 2


def test_a_plugin_module_is_identified_by_its_source_and_a_builtin_one_by_nothing(tmp_path, monkeypatch):
    assert code_identity("bench.detectors.lenet") is None
    package = tmp_path / "my_plugin_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("WIDTH = 8\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = code_identity("my_plugin_pkg.helpers")
    assert first.distribution is None and first.version is None  # found on the path, not installed
    (package / "helpers.py").write_text("WIDTH = 16\n")  # any file of the package counts
    code_identity.cache_clear()  # a new process would see the edit
    assert code_identity("my_plugin_pkg").sha256 != first.sha256
