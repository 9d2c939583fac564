"""`bench verify`: published records re-measured from the suite they carry, drift reported (with the tolerance
it was checked against, by default the published seed spread) and failed."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner
from synthetic import inline_suite, write_results

import bench.execute
import bench.verify
from bench.cli import main
from bench.runner import Runner
from bench.suite import Suite

SOURCES = {  # CIFAKE as cached by the cifake_dir fixture (each run skips reading the zip)
    "cifake-real-train": {"importer": "cached", "split": "train", "label": "real"},
    "cifake-sd14-train": {"importer": "cached", "split": "train", "label": "fake"},
    "ddpm-train": {"importer": "folder", "path": "ddpm-cifar10/FAKE", "split": "train", "label": "fake"},
    "cifake-real-test": {"importer": "cached", "split": "test", "label": "real"},
    "cifake-sd14-test": {"importer": "cached", "split": "test", "label": "fake"},
}
TEST = {"real": "cifake-real-test", "fake": ["cifake-sd14-test"], "limit": 200}
# LeNet and a (non-differentiable) random forest, two seeds, clean and FGSM, with saliency attributions
DETECTION = {
    "name": "verify-detection", "seeds": [0, 1], "sources": SOURCES,
    "train": [{"name": "sd14", "real": ["cifake-real-train"], "fake": ["cifake-sd14-train"], "limit": 300}],
    "test": TEST,
    "detectors": [{"name": "lenet"}, {"name": "random-forest", "kwargs": {"n_estimators": 10, "n_jobs": 1}}],
    "recipe": {"epochs": 1}, "perturbations": ["clean", {"name": "fgsm", "eps": "2/255"}],
    "attribution": {"methods": ["saliency"], "images": 4, "steps": 4, "figure_images": 1}, "bootstrap": 50,
}
# LeNet trained with one class per source: real, SD and the ddpm-cifar10 samples
SOURCE_ATTRIBUTION = {
    "name": "verify-sources", "seeds": [0], "sources": SOURCES,
    "train": [{"name": "which-source", "real": ["cifake-real-train"], "fake": ["cifake-sd14-train", "ddpm-train"],
               "limit": 300, "attribute_sources": True}],
    "test": TEST, "detectors": [{"name": "lenet"}], "recipe": {"epochs": 1}, "bootstrap": 50,
}


@pytest.fixture(scope="module")
def published(cifake_dir, data_root, tmp_path_factory):
    """The results folders of both suites, and the cache that made them."""
    root = tmp_path_factory.mktemp("published")
    cache = root / "cache"
    (cache / "sources").mkdir(parents=True)
    for source in (cifake_dir / "sources").iterdir():  # shared read-only; checkpoints stay private
        (cache / "sources" / source.name).symlink_to(source)
    for suite in (DETECTION, SOURCE_ATTRIBUTION):
        Runner(cache, root / suite["name"], data_root, device="cpu", progress=False).run(Suite.model_validate(suite))
    return root, cache


@pytest.fixture
def results(published, tmp_path):
    """A private copy of the detection suite's results folder, to edit."""
    root, _ = published
    shutil.copytree(root / DETECTION["name"], tmp_path / "results")
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoints are cached: verifying must not train")

    monkeypatch.setattr(bench.execute, "fit", refuse)


@pytest.fixture
def remeasure_only(monkeypatch):
    """For tests that edit a record's numbers to exercise the re-measurement: the check against the record's own
    score file, which refuses such an edit before anything is re-measured, is left out (tests/test_reliability.py
    tests it)."""
    monkeypatch.setattr(bench.verify, "check_records", lambda records: 0)


LENET = ("--detectors", "lenet")  # tests that edit LeNet's records leave the random forest out


def verify(results, published, data_root, *options):
    _, cache = published
    return CliRunner().invoke(main, ["verify", str(results), "--data-dir", str(cache), "--data-root", str(data_root),
                                     "--device", "cpu", "--no-progress", *map(str, options)])


def records(results: Path, detector: str = "lenet", perturbation: str = "clean") -> dict[int, tuple[Path, dict]]:
    """The records of one cell by seed, with their paths."""
    found = {}
    for path in (results / "records").glob("*.json"):
        record = inline_suite(path)
        if record["detector"] == detector and record["perturbation"]["name"] == perturbation:
            found[record["seed"]] = path, record
    return found


def shifted(values: list[float], floor: float = 0.005) -> float:
    """A shift of every seed's value by well over their spread (towards the middle of [0, 1])."""
    shift = 3 * max(statistics.stdev(values), floor) + 0.01
    return shift if statistics.mean(values) < 0.5 else -shift


def drifted_lines(output: str, path: Path) -> list[str]:
    return [line for line in output.splitlines() if path.name in line]


def test_unchanged_records_verify_quietly(results, published, data_root):
    assert len(list((results / "records").glob("*.json"))) == 8  # 2 detectors x 2 perturbations x 2 seeds
    assert all(r["not_applicable"] for _, r in records(results, "random-forest", "fgsm").values())
    assert all(r["attribution"]["not_applicable"] for _, r in records(results, "random-forest").values())
    result = verify(results, published, data_root)
    assert result.exit_code == 0, result.output
    assert result.output == ""
    on_a_subset = verify(results, published, data_root, "--limit", 100)
    assert on_a_subset.exit_code == 0, on_a_subset.output
    root, _ = published
    with_sources = verify(root / SOURCE_ATTRIBUTION["name"], published, data_root)
    assert with_sources.exit_code == 0, with_sources.output


def test_a_number_beyond_the_seed_spread_is_caught_with_its_tolerance(results, published, data_root, remeasure_only):
    cell = records(results)
    shift = shifted([record["metrics"]["accuracy"]["value"] for _, record in cell.values()])
    for path, record in cell.values():  # both seeds moved alike: the cell's spread stays as measured
        record["metrics"]["accuracy"]["value"] += shift
        path.write_text(json.dumps(record))
    result = verify(results, published, data_root, *LENET)
    assert result.exit_code == 1
    assert "2 drifted" in result.output
    for path, record in cell.values():
        [line] = drifted_lines(result.output, path)
        assert "| accuracy " in line and "(default 0.01; fewer than 2 other seeds)" in line  # two seeds: one other
        assert record["test"]["name"] in line
    assert verify(results, published, data_root, *LENET, "--tolerance", abs(shift) + 0.01).exit_code == 0


def test_one_seed_cells_take_the_default(results, published, data_root, remeasure_only):
    cell = records(results, perturbation="fgsm")
    cell[0][0].unlink()  # one seed left
    path, record = cell[1]
    record["metrics"]["accuracy"]["value"] += 0.5 if record["metrics"]["accuracy"]["value"] < 0.5 else -0.5
    record["metrics"]["evasion_rate"]["value"] += 0.5 if record["metrics"]["evasion_rate"]["value"] < 0.5 else -0.5
    path.write_text(json.dumps(record))
    result = verify(results, published, data_root, *LENET)
    assert result.exit_code == 1
    lines = drifted_lines(result.output, path)
    [accuracy] = [line for line in lines if "| accuracy " in line]
    assert "± 0.01 (default 0.01; fewer than 2 other seeds)" in accuracy  # never the record's own spread
    [evasion] = [line for line in lines if "| evasion_rate " in line]
    assert "± 0.01 (default 0.01; fewer than 2 other seeds)" in evasion


def test_a_changed_threshold_is_caught_unless_trained_on_other_hardware(results, published, data_root,
                                                                       remeasure_only):
    path, record = records(results)[0]
    record["threshold"] *= 1.001
    record["training"]["threshold"] = record["threshold"]
    path.write_text(json.dumps(record))
    result = verify(results, published, data_root, *LENET)
    assert result.exit_code == 1 and "2 drifted" in result.output
    lines = drifted_lines(result.output, path)
    assert len(lines) == 2 and all("1e-06 relative (same hardware)" in line for line in lines)
    assert {line.split("|")[7].strip() for line in lines} == {"threshold", "training threshold"}

    record["training"]["trained_on"]["cpu"] = "Another CPU"
    path.write_text(json.dumps(record))
    elsewhere = verify(results, published, data_root, *LENET)
    assert elsewhere.exit_code == 0, elsewhere.output
    assert "0 drifted" in elsewhere.output and "2 not comparable across hardware" in elsewhere.output
    assert "## Not comparable across hardware" in elsewhere.output and "trained on Another CPU" in elsewhere.output


def test_a_changed_attribution_score_is_caught(results, published, data_root):
    cell = records(results)
    scores = [record["attribution"]["methods"]["saliency"]["faithfulness"] for _, record in cell.values()]
    shift = shifted([score["value"] for score in scores])
    for (path, record), score in zip(cell.values(), scores, strict=True):
        score["value"] += shift
        path.write_text(json.dumps(record))
    result = verify(results, published, data_root, *LENET)
    assert result.exit_code == 1 and "2 drifted" in result.output
    for path, _ in cell.values():
        [line] = drifted_lines(result.output, path)
        assert "| attribution saliency faithfulness " in line and "(default 0.01; fewer than 2 other" in line


def test_applicability_must_come_back_as_published(results, published, data_root):
    path, record = records(results)[0]
    record |= {"not_applicable": "edited", "metrics": {}}
    path.write_text(json.dumps(record))
    (forest_path, forest), _ = records(results, "random-forest").values()
    forest["attribution"] = records(results)[1][1]["attribution"]  # scores for a detector without gradients
    forest_path.write_text(json.dumps(forest))
    result = verify(results, published, data_root)
    assert result.exit_code == 1
    [line] = drifted_lines(result.output, path)
    assert "| cell applicability " in line and "| not applicable (edited) " in line and "| applicable " in line
    [line] = [line for line in drifted_lines(result.output, forest_path) if "| attribution applicability " in line]
    assert "| applicable " in line and "| not applicable (gradient attributions need a differentiable" in line


def test_a_changed_source_attribution_count_is_caught(published, data_root, tmp_path):
    root, _ = published
    results = shutil.copytree(root / SOURCE_ATTRIBUTION["name"], tmp_path / "results")
    path = sorted((results / "records").glob("*.json"))[0]
    record = json.loads(path.read_text())
    assert record["source_attribution"]["classes"] == ["real", "cifake-sd14-train", "ddpm-train"]
    record["source_attribution"]["predicted"]["real"]["ddpm-train"] += 1
    path.write_text(json.dumps(record))
    result = verify(results, published, data_root)
    assert result.exit_code == 1 and "1 drifted" in result.output
    [line] = drifted_lines(result.output, path)
    assert "source attribution real → ddpm-train" in line and "exact count" in line
    assert verify(results, published, data_root, "--limit", 100).exit_code == 0  # other images: not compared


def test_records_without_their_suite_cannot_be_verified(tmp_path):
    results = tmp_path / "results"
    write_results(results, ["lenet", "random-forest"], seeds=(0, 1))  # synthetic: nothing is re-measured
    for path in (results / "records").glob("*.json"):
        record = inline_suite(path)
        del record["suite_config"]
        path.write_text(json.dumps(record))

    def verify(detectors: str):
        return CliRunner().invoke(main, ["verify", str(results), "--data-dir", str(tmp_path / "cache"), "--device",
                                         "cpu", "--no-progress", "--detectors", detectors])

    result = verify("le*")
    assert result.exit_code == 1 and "0 drifted, 4 could not be re-measured" in result.output
    assert "no suite_config" in result.output
    nothing = verify("resnet*")
    assert nothing.exit_code == 1 and "no records of detectors matching" in nothing.output


def test_the_rebuilt_run_takes_the_published_thread_count_unless_its_suite_fixes_one(
    results, published, data_root, monkeypatch, remeasure_only
):
    """Generated sources and trained weights depend on torch's thread count, so a suite without ``threads`` is
    re-run with the count its records were made with."""
    seen = []

    class Recording(bench.verify.Runner):
        def __init__(self, *args, threads=None, **kwargs):
            seen.append(threads)
            super().__init__(*args, threads=threads, **kwargs)

    monkeypatch.setattr(bench.verify, "Runner", Recording)
    cell = records(results)
    made_with = {record["provenance"]["hardware"]["torch_threads"] for _, record in cell.values()}
    assert len(made_with) == 1 and None not in made_with
    assert all(record["suite_config"].get("threads") is None for _, record in cell.values())
    assert verify(results, published, data_root, *LENET).exit_code == 0
    assert seen == [*made_with]
    for path in (results / "records").glob("*.json"):  # the suite fixes a count: that one, whatever records say
        record = inline_suite(path)
        record["suite_config"]["threads"] = 3
        path.write_text(json.dumps(record))
    seen.clear()
    verify(results, published, data_root, *LENET)
    assert seen == [3]
