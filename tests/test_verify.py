"""`bench verify`: published records re-measured from the suite they carry, drift reported and failed."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

import bench.execute
from bench.cli import main
from bench.runner import Runner
from bench.suite import load_suite


@pytest.fixture(scope="module")
def published(cifake_dir, data_root, tmp_path_factory):
    """Records of LeNet on the smoke suite's sources, shrunk to run in seconds, and the cache that made them."""
    root = tmp_path_factory.mktemp("published")
    cache = root / "cache"
    (cache / "sources").mkdir(parents=True)
    for source in (cifake_dir / "sources").iterdir():  # shared read-only; checkpoints stay private
        (cache / "sources" / source.name).symlink_to(source)
    suite = load_suite("smoke").with_overrides(train_limit=200, test_limit=50, epochs=1, detectors="lenet",
                                               bootstrap=20)
    Runner(cache, root / "results", data_root, device="cpu", progress=False).run(suite)
    return root / "results", cache


@pytest.fixture
def results(published, tmp_path):
    """A private copy of the published results folder, to edit."""
    folder, _ = published
    shutil.copytree(folder, tmp_path / "results")
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoints are cached: verifying must not train")

    monkeypatch.setattr(bench.execute, "train_detector", refuse)


def verify(results, published, data_root, *options):
    _, cache = published
    return CliRunner().invoke(main, ["verify", str(results), "--data-dir", str(cache), "--data-root", str(data_root),
                                     "--device", "cpu", "--no-progress", *map(str, options)])


def test_unchanged_records_verify_quietly(results, published, data_root):
    result = verify(results, published, data_root)
    assert result.exit_code == 0, result.output
    assert result.output == ""
    on_a_subset = verify(results, published, data_root, "--limit", 20)
    assert on_a_subset.exit_code == 0, on_a_subset.output


def test_an_edited_number_is_caught(results, published, data_root):
    path = sorted((results / "records").glob("*.json"))[0]
    record = json.loads(path.read_text())
    record["metrics"]["accuracy"]["value"] += 0.05
    path.write_text(json.dumps(record))
    result = verify(results, published, data_root)
    assert result.exit_code == 1
    assert "1 drifted" in result.output
    drifted = [line for line in result.output.splitlines() if path.name in line]
    assert len(drifted) == 1 and "| accuracy" in drifted[0] and record["test"]["name"] in drifted[0]
    assert verify(results, published, data_root, "--tolerance", 0.06).exit_code == 0


def test_on_a_subset_the_published_interval_is_the_reference(results, published, data_root):
    path = sorted((results / "records").glob("*.json"))[0]
    record = json.loads(path.read_text())
    record["metrics"]["roc_auc"] = {"value": 0.99, "ci": [0.98, 1.0]}  # far from what LeNet measures
    path.write_text(json.dumps(record))
    result = verify(results, published, data_root, "--limit", 20)
    assert result.exit_code == 1
    assert "at most 20 test images" in result.output and "| roc_auc" in result.output


def test_records_without_their_suite_cannot_be_verified(results, published, data_root):
    for path in (results / "records").glob("*.json"):
        record = json.loads(path.read_text())
        del record["suite_config"]
        path.write_text(json.dumps(record))
    result = verify(results, published, data_root, "--detectors", "le*")
    assert result.exit_code == 1 and "0 drifted, 2 could not be re-measured" in result.output
    assert "no suite_config" in result.output
    nothing = verify(results, published, data_root, "--detectors", "resnet*")
    assert nothing.exit_code == 1 and "no records of detectors matching" in nothing.output
