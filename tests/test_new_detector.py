"""`bench new detector`: the created package installs with pip, registers its detector, and trains."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from bench.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_created_package_installs_registers_and_trains(tmp_path):
    created = invoke("new", "detector", "my-cnn", "--dir", tmp_path)
    assert created.exit_code == 0, created.output
    package = Path(created.output.strip())
    assert package == tmp_path / "bench-my-cnn"
    assert {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", "suite.yaml", "bench_my_cnn/__init__.py", "bench_my_cnn/detector.py"}
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert subprocess.run([ruff, "check", "--quiet", str(package)], capture_output=True).returncode == 0

    # installed the way a researcher would (pip, from its pyproject.toml), into a folder of its own
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(package)], check=True, capture_output=True)
    # in a fresh interpreter that sees the package only through its entry point: registered, its suite
    # validates, and it trains (two optimiser steps on random images)
    check = tmp_path / "check.py"
    check.write_text(textwrap.dedent("""
        import sys

        import numpy as np
        import torch

        from bench.detector import DETECTORS, build_detector
        from bench.recipe import Recipe
        from bench.suite import load_suite
        from bench.training import train_detector

        assert "my-cnn" in DETECTORS.names() and not DETECTORS.broken, (DETECTORS.names(), DETECTORS.broken)
        assert [d.name for d in load_suite(sys.argv[1]).detectors] == ["my-cnn", "lenet"]
        images = np.random.default_rng(0).integers(0, 256, (72, 3, 32, 32), dtype=np.uint8)
        labels = np.repeat([0, 1], 36)
        result = train_detector(build_detector("my-cnn"), images, labels, Recipe(epochs=1, batch_size=32), seed=0,
                                device=torch.device("cpu"), progress=False)
        print(DETECTORS.origin("my-cnn"), result.n_train, len(result.history))
    """))
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, str(check), str(package / "suite.yaml")], env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["bench_my_cnn.detector", "64", "1"]

def test_names_that_cannot_be_used_are_refused(tmp_path):
    taken = invoke("new", "detector", "lenet", "--dir", tmp_path)
    assert taken.exit_code == 1 and "already registered" in taken.output
    bad = invoke("new", "detector", "My CNN", "--dir", tmp_path)
    assert bad.exit_code == 1 and "lower-case" in bad.output
    assert invoke("new", "detector", "twice", "--dir", tmp_path).exit_code == 0
    again = invoke("new", "detector", "twice", "--dir", tmp_path)
    assert again.exit_code == 1 and "already exists" in again.output
