"""Cells aggregated over training seeds and detectors compared pairwise, on synthetic records.

Each made-up detector's per-image scores are binormal logits built from noise shared by every detector (how
hard an image is), noise of the detector and noise of the training seed; its records are measured from them as
a run would (``bench.metrics.evaluate``) and written with their score files into a results folder, so what the
statistics must find is known and nothing is trained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from synthetic import LABELS, logits, write_detector, write_record

from bench.cli import main
from bench.compare import aggregate, compare_detectors, verdict_text
from bench.leaderboard import write_leaderboard
from bench.leaderboard_markdown import render_markdown
from bench.leaderboard_model import BELOW_CHANCE, below_chance_note, build_leaderboard
from bench.metrics import DEFAULT_HEADLINE, wilson_interval
from bench.records import RecordError, load_records
from bench.statistics import holm

T_LABEL = ("mean over 3 training seeds [95% t interval over training seeds and test images: variance across seeds / 3 "
           "(2 degrees of freedom) + bootstrap variance over the test images the seeds share]")


def records_of(folder: Path) -> list:
    return list(load_records(folder).values())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A results folder: detectors a (better) and b, three seeds each, clean and under JPEG."""
    write_detector(tmp_path / "results", "a", jpeg=True, separation=2.0)
    write_detector(tmp_path / "results", "b", jpeg=True)
    return tmp_path / "results"


def board(folder: Path):
    return build_leaderboard(records_of(folder), folder)


def test_every_view_aggregates_over_seeds_and_keeps_the_per_seed_values(folder):
    write_leaderboard(records_of(folder), folder, "synthetic")
    cells, seeds = pd.read_csv(folder / "leaderboard.csv"), pd.read_csv(folder / "leaderboard-seeds.csv")
    assert len(seeds) == 12 and len(cells) == 4  # 2 detectors x 2 perturbations x 3 seeds
    assert set(cells["n_seeds"]) == {3} and set(cells["seeds"]) == {"0 1 2"} and set(cells["interval"]) == {T_LABEL}
    for _, cell in cells.iterrows():
        per_seed = seeds[(seeds["name"] == cell["name"]) & (seeds["perturbation"] == cell["perturbation"])]
        assert sorted(per_seed["seed"]) == [0, 1, 2]
        assert sorted(per_seed["record"]) == sorted(cell["records"].split())
        for metric in ("roc_auc", "balanced_accuracy", "accuracy"):
            assert cell[metric] == pytest.approx(per_seed[metric].mean())
            assert cell[f"{metric}_std"] == pytest.approx(per_seed[metric].std(ddof=1))
            # with 3 seeds the t interval always spans the seeds (a percentile bootstrap over them need not)
            assert cell[f"{metric}_ci_low"] <= per_seed[metric].min() <= per_seed[metric].max() <= \
                cell[f"{metric}_ci_high"]
        if cell["perturbation"] != "clean":  # evasion: a t interval from the clean and perturbed scores
            assert cell["evasion_rate"] == pytest.approx(per_seed["evasion_rate"].mean())
            assert cell["evasion_rate_ci_low"] < cell["evasion_rate"] < cell["evasion_rate_ci_high"]

    markdown = (folder / "leaderboard.md").read_text()
    every = markdown.split("## Every cell")[1]
    assert every.count(T_LABEL) == 1 and "| Seeds " in every and "| Bal acc sd " in every
    assert sum(line.startswith("| a ") for line in every.splitlines()) == 2  # one row per cell, not per seed
    a = cells[(cells["name"] == "a") & (cells["perturbation"] == "clean")].iloc[0]
    shown = f"{a['roc_auc']:.3f} [{a['roc_auc_ci_low']:.3f}, {a['roc_auc_ci_high']:.3f}]"
    robustness = markdown.split("## Robustness")[1].split("## Every cell")[0]
    assert shown in robustness and shown in every and T_LABEL in robustness  # the same aggregate everywhere
    assert "| AP chance " in every and "| 0.500 " in every and "benchmarks/coverage.py" in markdown


def test_one_seed_intervals_cover_the_test_images_only(folder):
    records = [r for r in records_of(folder) if r.seed == 0]
    for one in aggregate(records, folder):
        assert one.covers == "one training seed [95% bootstrap: test images only]"
        stored = one.records[0].metrics["roc_auc"]
        assert one.metrics["roc_auc"]["ci"] == pytest.approx(stored.ci)  # the record's own bootstrap draws
        assert np.isnan(one.metrics["roc_auc"]["std"])
    markdown = render_markdown(build_leaderboard(records, folder), "seed 0")
    assert "Bal acc sd" not in markdown and "test images only" in markdown.split("## Every cell")[1]


def test_two_records_for_one_cell_identity_are_an_error(folder):
    record = records_of(folder)[0]
    (folder / "records" / "copy.json").write_text(json.dumps(record.model_dump(mode="json") | {"key": "copy"}))
    with pytest.raises(RecordError, match="both measure"):
        board(folder)
    result = CliRunner().invoke(main, ["leaderboard", "render", str(folder)])
    assert result.exit_code == 1 and "both measure" in result.output


def test_the_paired_test_tells_apart_detectors_whose_intervals_overlap(folder):
    for seed in (0, 1, 2):
        scores = logits("a", seed, separation=2.0)
        write_record(folder, "a-shifted", seed, scores - 0.15 * scores.std() * LABELS)  # slightly worse fakes
        write_record(folder, "a-reseeded", (seed + 1) % 3, scores)  # the same three models, other seed numbers
    lenet_board = board(folder)
    cells = lenet_board.cells.set_index(["name", "perturbation"])
    a, worse = cells.loc[("a", "clean")], cells.loc[("a-shifted", "clean")]
    assert a["roc_auc"] > worse["roc_auc"] and worse["roc_auc_ci_high"] > a["roc_auc_ci_low"]  # intervals overlap

    pairs = lenet_board.comparisons.set_index(["a", "b", "perturbation"])
    told = pairs.loc[("a", "a-shifted", "clean")]
    assert told["roc_auc_ci_low"] > 0 and told["roc_auc_p_holm"] < 0.05 and told["verdict"].startswith("a better")
    assert told["test"] == "t test over training seeds (paired by seed) and test images (paired bootstrap)"
    same = pairs.loc[("a", "a-reseeded", "clean")]
    assert same["roc_auc_difference"] == pytest.approx(0, abs=1e-12) and same["verdict"] == "not told apart"
    assert same["roc_auc_ci_low"] < 0 < same["roc_auc_ci_high"]
    assert ("a", "b", "jpeg(quality=50)") in pairs.index

    write_leaderboard(lenet_board.records, folder, "derived")
    markdown = (folder / "leaderboard.md").read_text()
    section = markdown.split("## Which detector is better")[1].split("\n## ")[0]
    assert "Holm" in section and "| AUC p (Holm) " in section
    line = next(row for row in section.splitlines() if row.startswith("| a ") and "a-shifted" in row)
    assert "| **+0." in line and "a better" in line
    assert "not told apart" in next(row for row in section.splitlines() if "a-reseeded" in row)
    page = (folder / "leaderboard.html").read_text()
    assert "Which detector is better" in page and "<strong>+0." in page and "a better" in page
    assert len(pd.read_csv(folder / "leaderboard-comparisons.csv")) == 1 + 6  # pairs of 2 (jpeg) and of 4 (clean)


def test_p_values_are_adjusted_by_holm_across_the_pairs_and_metrics_of_a_table(folder):
    write_detector(folder, "c", separation=1.0)
    comparisons = [c for c in compare_detectors(aggregate(records_of(folder), folder))
                   if c.a.cell.perturbation == "clean"]
    assert len(comparisons) == 3
    raw = [c.metrics[name]["p_value"] for c in comparisons for name in DEFAULT_HEADLINE]
    adjusted = [c.metrics[name]["p_holm"] for c in comparisons for name in DEFAULT_HEADLINE]
    assert adjusted == pytest.approx(list(holm(raw))) and all(h >= p for h, p in zip(adjusted, raw, strict=True))
    assert all(c.metrics[name]["significant"] == (c.metrics[name]["p_holm"] < 0.05) for c in comparisons
               for name in DEFAULT_HEADLINE)


def test_a_verdict_names_every_headline_metric_that_disagrees(folder):
    for seed in (0, 1, 2):  # ranks better than a, but its threshold calls nearly everything fake
        write_record(folder, "sharp-but-misplaced", seed, logits("sharp", seed, separation=3.0), threshold=-2.5)
    pairs = board(folder).comparisons.set_index(["a", "b", "perturbation"])
    assert pairs.loc[("sharp-but-misplaced", "a", "clean"), "verdict"] == \
        "AUC favours sharp-but-misplaced, Bal acc favours a: no verdict"

    def metric(difference: float, significant: bool, auc: float = 0.8) -> dict:
        return {"difference": difference, "significant": significant, "a": auc, "b": auc - difference}

    assert verdict_text("x", "y", {"roc_auc": metric(0.1, True), "balanced_accuracy": metric(0.02, False)}) == \
        "x better on AUC; Bal acc not told apart"
    assert verdict_text("x", "y", {"roc_auc": metric(0.1, True), "balanced_accuracy": metric(0.1, True)}) == "x better"
    assert verdict_text("x", "y", {"roc_auc": metric(-0.1, True), "balanced_accuracy": metric(0.0, False)}) == \
        "y better on AUC; Bal acc not told apart"
    assert verdict_text("x", "y", {"roc_auc": metric(0.1, True, auc=0.45), "balanced_accuracy": metric(0.1, True)}) \
        == "both below chance (mean AUC below 0.5): no verdict"
    assert verdict_text("x", "y", {"roc_auc": metric(0.1, True, auc=0.6), "balanced_accuracy": metric(0.02, True,
                                                                                                    auc=0.49)}) \
        == "both below chance (mean Bal acc below 0.5): no verdict"  # AUC apart, but neither better than a coin


def test_one_seed_each_adds_delong_and_says_seeds_are_not_covered(folder):
    records = [r for r in records_of(folder) if r.seed == 0 and r.perturbation.name == "clean"]
    told = build_leaderboard(records, folder).comparisons.set_index(["a", "b"]).loc[("a", "b")]
    assert told["test"] == ("t test over test images only (paired bootstrap variance); training seeds not covered; "
                            "DeLong for AUC")
    assert told["roc_auc_ci_low"] > 0 and told["roc_auc_delong_p"] < 0.05 and told["verdict"].startswith("a better")


def test_degenerate_proportions_get_wilson_intervals(folder):
    write_detector(folder, "never-fake")
    for record in records_of(folder):  # re-measured at a threshold above every score
        if record.detector == "never-fake":
            write_record(folder, "never-fake", record.seed, np.load(folder / record.scores.file), 1e9)
    markdown = render_markdown(board(folder), "degenerate")
    row = next(line for line in markdown.split("## Every cell")[1].splitlines() if line.startswith("| never-fake "))
    assert "0.000 [0.000, 0.000]" not in markdown and "1.000 [1.000, 1.000]" not in markdown
    assert "| 0.000 [0.000, 0.0" in row and "| 1.000 [0.9" in row  # Acc fake and Acc real: Wilson's intervals
    assert "| 0.500 [0.4" in row  # balanced accuracy: the mean of the two classes' Wilson intervals


def test_only_an_auc_interval_below_chance_is_flagged(folder):
    write_detector(folder, "inverted", separation=-1.5)
    write_detector(folder, "coin", separation=-0.05, seed_noise=0.05)  # a little below 0.5, well within noise
    write_leaderboard(records_of(folder), folder, "inverted")
    markdown, page = (folder / "leaderboard.md").read_text(), (folder / "leaderboard.html").read_text()
    cells = pd.read_csv(folder / "leaderboard.csv").set_index(["name", "perturbation"])
    coin = cells.loc[("coin", "clean")]
    assert coin["roc_auc"] < 0.5 < coin["roc_auc_ci_high"]
    rows = {line.split("|")[1].strip(): line for line in markdown.split("## Every cell")[1].splitlines()
            if line.startswith("| ") and "clean" in line}
    assert f"] {BELOW_CHANCE}" in rows["inverted"] and BELOW_CHANCE not in rows["coin"] + rows["a"]
    assert below_chance_note() in markdown and 'class="flag"' in page and below_chance_note() in page
    pair = board(folder).comparisons.set_index(["a", "b", "perturbation"]).loc[("coin", "inverted", "clean")]
    assert pair["roc_auc_p_holm"] < 0.05  # coin ranks far better than inverted, but neither is a detector here
    assert pair["verdict"] == "both below chance (mean AUC below 0.5): no verdict"


def test_an_evasion_rate_of_zero_over_seeds_gets_a_wilson_interval_not_zero_width():
    from bench.compare import _evasion_interval

    labels = np.r_[np.zeros(50, int), np.ones(200, int)]
    rng = np.random.default_rng(0)
    clean = [(labels, np.r_[rng.normal(-2, 1, 50), rng.normal(2, 1, 200)], 0.0) for _ in range(3)]
    low, high = _evasion_interval(clean, clean, 200, 0.95, 0)  # an attack at eps 0 changes nothing
    detected = sum(int((run[1][labels == 1] >= 0).sum()) for run in clean)
    assert low == 0 and high == pytest.approx(wilson_interval(0, detected)[1]) and high > 0


def test_records_without_score_files_keep_their_stored_intervals(folder):
    shutil.rmtree(folder / "scores")
    one = [r for r in records_of(folder) if r.seed == 0]
    for cell in aggregate(one, folder):
        assert cell.covers.endswith("[95% interval stored in the record: test images only; no score file]")
    assert all(c.test == "not compared: records without score files" for c in compare_detectors(aggregate(one,
                                                                                                         folder)))
