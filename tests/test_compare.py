"""Cells aggregated over training seeds, detectors compared pairwise and runs diffed, on real records.

A tiny suite (two detectors, three seeds, one epoch on 300 + 300 CIFAKE images) is run once; made-up
detectors are derived from its real lenet records by transforming their score files (and re-measuring them),
so that what the paired tests must find is known.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.compare import aggregate
from bench.diff import PAIRED, diff_records
from bench.leaderboard import BELOW_CHANCE_NOTE, build_leaderboard, render_markdown, write_leaderboard
from bench.metrics import evaluate, wilson_interval
from bench.records import RecordError, load_records
from bench.runner import Runner
from bench.sources import content_hash
from bench.suite import load_suite

SUITE = """
name: seeds
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 300}]
test: {real: cifake-real-test, fake: [cifake-sd14-test], limit: 200}
detectors: [{name: lenet}, {name: cifake-cnn}]
seeds: [0, 1, 2]
recipe: {epochs: 1}
perturbations: [clean, {name: jpeg, quality: 50}]
bootstrap: 200
"""
TWO_LEVEL = "mean over 3 training seeds [95% two-level bootstrap: training seeds and test images]"
Transform = Callable[[np.ndarray, np.ndarray], np.ndarray]


@pytest.fixture(scope="module")
def run(cifake_dir, data_root, tmp_path_factory) -> Path:
    """The results folder of the suite (records, score files, leaderboard)."""
    path = tmp_path_factory.mktemp("suite") / "seeds.yaml"
    path.write_text(textwrap.dedent(SUITE))
    results, cache = tmp_path_factory.mktemp("seeds"), tmp_path_factory.mktemp("seeds-cache") / "cache"
    shutil.copytree(cifake_dir, cache)
    Runner(cache, results, data_root, device="cpu", progress=False).run(load_suite(path))
    return results


@pytest.fixture
def folder(run, tmp_path) -> Path:
    """A private copy of the results folder, to add made-up records to."""
    shutil.copytree(run, tmp_path / "results")
    return tmp_path / "results"


def rescore(folder: Path, record: dict, transform: Transform, threshold: float | None = None, **changes) -> dict:
    """Re-measure ``record`` on its transformed scores with ``changes`` applied (a new key makes a new record);
    writes the record and its score file into ``folder``."""
    labels = np.r_[np.zeros(record["n_real"], int), np.ones(record["n_fake"], int)]
    scores = transform(np.load(folder / record["scores"]["file"]), labels).astype(np.float32)
    boot = record["bootstrap"]
    new = record | evaluate(labels, scores, record["threshold"] if threshold is None else threshold,
                            boot["resamples"], boot["level"], boot["seed"]) | changes
    new["scores"] = {"file": f"scores/{new['key']}.npy", "sha256": content_hash(scores)}
    np.save(folder / new["scores"]["file"], scores)
    (folder / "records" / f"{new['key']}.json").write_text(json.dumps(new))
    return new


def derive(folder: Path, name: str, transform: Transform = lambda scores, labels: scores,
           threshold: float | None = None, seeds: dict[int, int] | None = None) -> None:
    """A made-up detector ``name``: lenet's clean records re-measured on transformed scores (seeds renamed)."""
    for record in list(load_records(folder).values()):
        if record["detector"] == "lenet" and record["perturbation"]["name"] == "clean":
            key = hashlib.sha256(f"{name} {record['key']}".encode()).hexdigest()
            rescore(folder, record, transform, threshold, key=key, detector=name,
                    seed=(seeds or {}).get(record["seed"], record["seed"]))


def shifted(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The fakes' scores lowered by a tenth of the scores' spread: a slightly worse copy of the detector."""
    return scores - 0.1 * scores.std() * labels


def board(folder: Path):
    return build_leaderboard(list(load_records(folder).values()), folder)


def test_every_view_aggregates_over_seeds_and_keeps_the_per_seed_values(run):
    cells, seeds = pd.read_csv(run / "leaderboard.csv"), pd.read_csv(run / "leaderboard-seeds.csv")
    assert len(seeds) == 12 and len(cells) == 4  # 2 detectors x 2 perturbations x 3 seeds
    assert set(cells["n_seeds"]) == {3} and set(cells["seeds"]) == {"0 1 2"} and set(cells["interval"]) == {TWO_LEVEL}
    for _, cell in cells.iterrows():
        per_seed = seeds[(seeds["name"] == cell["name"]) & (seeds["perturbation"] == cell["perturbation"])]
        assert sorted(per_seed["seed"]) == [0, 1, 2]
        assert sorted(per_seed["record"]) == sorted(cell["records"].split())
        for metric in ("roc_auc", "balanced_accuracy", "accuracy"):
            assert cell[metric] == pytest.approx(per_seed[metric].mean())
            assert cell[f"{metric}_std"] == pytest.approx(per_seed[metric].std(ddof=1))
            assert cell[f"{metric}_ci_low"] <= cell[metric] <= cell[f"{metric}_ci_high"]
        if cell["perturbation"] != "clean":  # evasion: a two-level interval from the clean and perturbed scores
            assert cell["evasion_rate"] == pytest.approx(per_seed["evasion_rate"].mean())
            assert cell["evasion_rate_ci_low"] <= cell["evasion_rate"] <= cell["evasion_rate_ci_high"]
    assert {row["seed"] for row in json.loads((run / "leaderboard-seeds.json").read_text())} == {0, 1, 2}

    markdown = (run / "leaderboard.md").read_text()
    every = markdown.split("## Every cell")[1]
    assert every.count(TWO_LEVEL) == 1 and "| Seeds " in every and "| Bal acc sd " in every
    assert sum(line.startswith("| lenet ") for line in every.splitlines()) == 2  # one row per cell, not per seed
    lenet = cells[(cells["name"] == "lenet") & (cells["perturbation"] == "clean")].iloc[0]
    shown = f"{lenet['roc_auc']:.3f} [{lenet['roc_auc_ci_low']:.3f}, {lenet['roc_auc_ci_high']:.3f}]"
    robustness = markdown.split("## Robustness")[1].split("## Every cell")[0]
    assert shown in robustness and shown in every and TWO_LEVEL in robustness  # the same aggregate everywhere
    assert "| AP chance " in every and "| 0.500 " in every  # 200 real vs 200 fake


def test_one_seed_intervals_cover_the_test_images_only(run):
    records = [r for r in load_records(run).values() if r["seed"] == 0]
    for one in aggregate(records, run):
        assert one.covers == "one training seed [95% bootstrap: test images only]"
        stored = one.records[0]["metrics"]["roc_auc"]
        assert one.metrics["roc_auc"]["ci"] == pytest.approx(stored["ci"])  # the record's own bootstrap draws
        assert np.isnan(one.metrics["roc_auc"]["std"])
    markdown = render_markdown(build_leaderboard(records, run), "seed 0")
    assert "Bal acc sd" not in markdown and "test images only" in markdown.split("## Every cell")[1]


def test_two_records_for_one_cell_identity_are_an_error(folder):
    record = next(iter(load_records(folder).values()))
    (folder / "records" / "copy.json").write_text(json.dumps(record | {"key": "copy"}))
    with pytest.raises(RecordError, match="both measure"):
        board(folder)
    result = CliRunner().invoke(main, ["leaderboard", "render", str(folder)])
    assert result.exit_code == 1 and "both measure" in result.output


def test_the_paired_test_tells_apart_detectors_whose_intervals_overlap(folder):
    derive(folder, "lenet-shifted", shifted)
    derive(folder, "lenet-reseeded", seeds={0: 1, 1: 2, 2: 0})  # the same three models, other seed numbers
    lenet_board = board(folder)
    clean = lenet_board.cells[lenet_board.cells["perturbation"] == "clean"]
    assert len(clean) == 4 and list(clean["balanced_accuracy"]) == sorted(clean["balanced_accuracy"], reverse=True)
    cells = lenet_board.cells.set_index(["name", "perturbation"])
    lenet, worse = cells.loc[("lenet", "clean")], cells.loc[("lenet-shifted", "clean")]
    assert lenet["roc_auc"] > worse["roc_auc"] and worse["roc_auc_ci_high"] > lenet["roc_auc_ci_low"]  # overlap

    pairs = lenet_board.comparisons.set_index(["a", "b", "perturbation"])
    told = pairs.loc[("lenet", "lenet-shifted", "clean")]
    assert told["roc_auc_ci_low"] > 0 and told["balanced_accuracy_ci_low"] >= 0
    assert told["test"] == "paired bootstrap over test images and training seeds (paired by seed)"
    same = pairs.loc[("lenet", "lenet-reseeded", "clean")]
    assert same["roc_auc_difference"] == pytest.approx(0, abs=1e-12)
    assert same["roc_auc_ci_low"] < 0 < same["roc_auc_ci_high"]  # not told apart
    assert ("cifake-cnn", "lenet", "jpeg(quality=50)") in pairs.index or \
        ("lenet", "cifake-cnn", "jpeg(quality=50)") in pairs.index

    write_leaderboard(lenet_board.records, folder, "derived")
    markdown = (folder / "leaderboard.md").read_text()
    section = markdown.split("## Which detector is better")[1].split("\n## ")[0]
    line = next(row for row in section.splitlines() if row.startswith("| lenet ") and "lenet-shifted" in row)
    assert "| **+0." in line and "lenet better" in line
    line = next(row for row in section.splitlines() if "lenet-reseeded" in row and row.startswith("| lenet "))
    assert "not told apart" in line
    page = (folder / "leaderboard.html").read_text()
    assert "Which detector is better" in page and "<strong>+0." in page and "lenet better" in page
    comparisons = pd.read_csv(folder / "leaderboard-comparisons.csv")
    assert len(comparisons) == 1 + 6  # pairs of 2 detectors (jpeg) and of 4 (clean)


def test_one_seed_each_adds_delong(folder):
    derive(folder, "lenet-shifted", shifted)
    records = [r for r in load_records(folder).values() if r["seed"] == 0 and r["perturbation"]["name"] == "clean"]
    pairs = build_leaderboard(records, folder).comparisons.set_index(["a", "b"])
    told = pairs.loc[("lenet", "lenet-shifted")]
    assert told["test"] == "paired bootstrap over test images; DeLong for AUC"
    assert told["roc_auc_ci_low"] > 0 and told["roc_auc_delong_p"] < 0.05
    assert pairs["roc_auc_delong_p"].notna().all()


def test_degenerate_proportions_get_wilson_intervals(folder):
    derive(folder, "lenet-never-fake", threshold=1e9)  # calls every image real
    markdown = render_markdown(board(folder), "degenerate")
    every = markdown.split("## Every cell")[1]
    row = next(line for line in every.splitlines() if line.startswith("| lenet-never-fake "))
    assert "0.000 [0.000, 0.000]" not in markdown and "1.000 [1.000, 1.000]" not in markdown
    assert "| 0.000 [0.000, 0.0" in row and "| 1.000 [0.9" in row  # Acc fake and Acc real: Wilson's intervals
    assert "| 0.500 [0.4" in row  # balanced accuracy: the mean of the two classes' Wilson intervals


def test_auc_below_chance_is_flagged(folder):
    derive(folder, "lenet-inverted", lambda scores, labels: -scores)
    write_leaderboard(list(load_records(folder).values()), folder, "inverted")
    markdown, page = (folder / "leaderboard.md").read_text(), (folder / "leaderboard.html").read_text()
    row = next(line for line in markdown.split("## Every cell")[1].splitlines() if line.startswith("| lenet-inverted "))
    assert "] ⚠" in row and BELOW_CHANCE_NOTE in markdown
    assert 'class="flag"' in page and BELOW_CHANCE_NOTE in page
    assert not any("⚠" in line for line in markdown.splitlines() if line.startswith("| lenet "))


def test_diff_uses_the_paired_bootstrap_on_the_same_test_images(run, folder, tmp_path):
    records = {(r["detector"], r["seed"], r["perturbation"]["name"]): r for r in load_records(folder).values()}
    worse = rescore(folder, records[("lenet", 0, "clean")], shifted)

    def swap(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Swap the scores of a real and a fake image adjacent in score order: AUC changes by one pair."""
        order = np.argsort(scores, kind="stable")
        i = next(i for i in range(len(order) - 1) if labels[order[i]] == 0 and labels[order[i + 1]] == 1)
        swapped = scores.copy()
        swapped[order[[i, i + 1]]] = scores[order[[i + 1, i]]]
        return swapped

    rescore(folder, records[("cifake-cnn", 1, "clean")], swap)
    result = diff_records(load_records(run), load_records(folder))
    auc = {(c.cell.detector, c.cell.seed): c for c in result.changes if c.metric == "roc_auc"}
    regression = auc[("lenet", 0)]
    old = records[("lenet", 0, "clean")]["metrics"]["roc_auc"]["ci"]
    assert worse["metrics"]["roc_auc"]["ci"][1] > old[0]  # the stored intervals overlap ...
    assert regression.test == PAIRED and regression.difference_ci[1] < 0  # ... the paired interval excludes 0
    assert regression.verdict == "regression"
    noise = auc[("cifake-cnn", 1)]
    assert noise.delta == pytest.approx(-1 / 200 / 200) and noise.test == PAIRED and noise.verdict == "within noise"

    cli = CliRunner().invoke(main, ["leaderboard", "diff", str(run), str(folder)])
    assert cli.exit_code == 1
    line = next(line for line in cli.output.splitlines() if "**regression**" in line and "roc_auc" in line)
    assert "paired bootstrap" in line and "lenet" in line
    assert "Tests used (changed numbers): paired bootstrap:" in cli.output

    shutil.rmtree(folder / "scores")  # without score files: the old rule, and it says so
    fallback = diff_records(load_records(run), load_records(folder))
    assert {c.test for c in fallback.changes} == {"non-overlap of intervals (no score files)"}
    assert not fallback.regressions  # overlapping intervals: the conservative rule misses the drop


def test_an_evasion_rate_of_zero_over_seeds_gets_a_wilson_interval_not_zero_width():
    from bench.compare import _evasion_interval

    labels = np.r_[np.zeros(50, int), np.ones(200, int)]
    rng = np.random.default_rng(0)
    clean = [(labels, np.r_[rng.normal(-2, 1, 50), rng.normal(2, 1, 200)], 0.0) for _ in range(3)]
    low, high = _evasion_interval(clean, clean, 200, 0.95, 0)  # an attack at eps 0 changes nothing
    detected = sum(int((run[1][labels == 1] >= 0).sum()) for run in clean)
    assert low == 0 and high == pytest.approx(wilson_interval(0, detected)[1]) and high > 0
