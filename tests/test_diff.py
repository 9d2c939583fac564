"""`bench leaderboard diff`: cells matched by identity, real changes told from noise (seed noise included),
regressions fail. Old schema-1 records (no score files) and synthetic records with score files (see
``synthetic``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from synthetic import LABELS, N, logits, write_detector, write_record

from bench.cli import main
from bench.diff import FLOOR, IMAGES_ONLY, SEEDS, Change, diff_records
from bench.records import load_records

PUBLISHED = Path(__file__).resolve().parent / "fixtures" / "smoke-v1" / "records"  # schema-1 records, no score files


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def shift(record: dict, metric: str, by: float) -> None:
    entry = record["metrics"][metric]
    entry["value"] += by
    entry["ci"] = [bound + by for bound in entry["ci"]]


@pytest.fixture
def folders(tmp_path):
    for name in ("old", "new"):
        shutil.copytree(PUBLISHED, tmp_path / name / "records")
    return tmp_path / "old", tmp_path / "new"


def test_identical_folders_differ_in_nothing(folders):
    result = invoke("leaderboard", "diff", *folders)
    assert result.exit_code == 0, result.output
    count = len(list(PUBLISHED.glob("*.json")))
    assert f"{count} cells in both, 0 added, 0 removed; 0 numbers changed: **0 regressions**" in result.output


def test_a_real_drop_beyond_the_tolerance_fails_and_is_reported(folders, tmp_path):
    old, new = folders
    first, second, third, fourth = sorted((new / "records").glob("*.json"))[:4]
    edit(first, lambda r: shift(r, "accuracy", -0.2))  # intervals apart: a regression
    edit(second, lambda r: shift(r, "roc_auc", +0.2))  # intervals apart, for the better
    edit(third, lambda r: r["metrics"]["f1"].update(value=r["metrics"]["f1"]["value"] + 0.001))  # noise
    fourth.unlink()
    added = json.loads(first.read_text()) | {"seed": 7}
    (new / "records" / "added.json").write_text(json.dumps(added))

    result = invoke("leaderboard", "diff", old, new)
    assert result.exit_code == 1
    report = result.output
    assert "1 added, 1 removed; 3 numbers changed: **1 regression**, 1 improvement" in report
    regressed = json.loads(first.read_text())
    line = next(line for line in report.splitlines() if "**regression**" in line)
    assert regressed["detector"] in line and "accuracy" in line and "-0.200" in line
    assert "improvement" in next(line for line in report.splitlines() if "roc_auc" in line)
    assert "<details><summary>1 other changed numbers" in report and "within noise" in report
    assert "#### Added cells" in report and "seed 7" in report
    assert "#### Removed cells" in report

    lenient = invoke("leaderboard", "diff", old, new, "--tolerance", "0.25", "--output", tmp_path / "diff.md")
    assert lenient.exit_code == 0 and lenient.output == ""  # quiet when written to a file
    assert "**0 regressions**, 0 improvements" in (tmp_path / "diff.md").read_text()


def test_two_records_for_one_cell_are_refused(folders):
    old, new = folders
    duplicate = sorted((new / "records").glob("*.json"))[0]
    shutil.copy(duplicate, new / "records" / "copy.json")
    result = invoke("leaderboard", "diff", old, new)
    assert result.exit_code == 1 and "both measure" in result.output
    assert "no records/ folder" in invoke("leaderboard", "diff", old, old.parent).output


@pytest.mark.parametrize(
    ("metric", "old", "new", "verdict"),
    [
        ("accuracy", (0.80, 0.75, 0.85), (0.70, 0.65, 0.74), "regression"),
        ("accuracy", (0.80, 0.75, 0.85), (0.76, 0.70, 0.80), "within noise"),  # overlapping intervals
        ("accuracy", (0.800, 0.799, 0.801), (0.795, 0.794, 0.796), "real, within tolerance"),
        ("evasion_rate", (0.10, 0.05, 0.15), (0.40, 0.30, 0.50), "regression"),  # lower is better
        ("evasion_rate", (0.40, 0.30, 0.50), (0.10, 0.05, 0.15), "improvement"),
    ],
)
def test_the_rule(metric, old, new, verdict):
    change = Change(("d", "t", "s", "clean", 0), metric, old[0], new[0], old[1:], new[1:], tolerance=0.01)
    assert change.verdict == verdict
    without_intervals = Change(("d", "t", "s", "clean", 0), metric, old[0], new[0], None, None, tolerance=0.01)
    assert without_intervals.real


def test_seed_noise_alone_is_not_a_change_with_several_seeds_a_side(tmp_path):
    """Old: seeds 0-2 of detectors a and b; new: three other trainings (other seed noise), numbered 0-2."""
    for name, offset in (("old", 0), ("new", 10)):
        for detector in ("a", "b"):
            for seed in (0, 1, 2):
                write_record(tmp_path / name, detector, seed, logits(detector, seed + offset))
    result = diff_records(load_records(tmp_path / "old"), load_records(tmp_path / "new"))
    assert result.matched == 6 and result.changes and {c.test for c in result.changes} == {SEEDS}
    assert {c.seeds for c in result.changes} == {"0, 1, 2 → 0, 1, 2"} and not any(c.real for c in result.changes)
    assert all(c.p_holm >= c.p_value for c in result.changes)


def test_a_drop_over_every_seed_is_a_regression(tmp_path):
    for seed in (0, 1, 2):
        scores = logits("a", seed)
        write_record(tmp_path / "old", "a", seed, scores)
        write_record(tmp_path / "new", "a", seed, scores - 0.5 * LABELS)  # every seed's fakes look more real
    result = diff_records(load_records(tmp_path / "old"), load_records(tmp_path / "new"))
    auc = next(c for c in result.changes if c.metric == "roc_auc")
    assert auc.test == SEEDS and auc.delta < -0.05 and auc.verdict == "regression"
    report = result.markdown("old", "new")
    assert "| 0, 1, 2 → 0, 1, 2 " in report and "Holm" in report


def test_one_seed_a_side_takes_the_seed_spread_of_a_folder_as_its_noise_floor(tmp_path):
    """New: a retraining of seed 0 alone that differs only in its seed noise (its random numbers drawn otherwise)."""
    write_detector(tmp_path / "published", "a", seed_shift=0.3)  # seeds that differ in AUC by about 0.05
    write_record(tmp_path / "new", "a", 0, logits("a", 10, seed_shift=0.3))
    write_record(tmp_path / "old", "a", 0, logits("a", 0, seed_shift=0.3))
    published, new = load_records(tmp_path / "published"), load_records(tmp_path / "new")
    floored = diff_records(published, new)  # the old folder has three seeds of the cell
    assert len(floored.removed) == 2 and {c.test for c in floored.changes} == {f"{FLOOR} of 3 seeds"}
    assert not any(c.real for c in floored.changes)
    bare = diff_records(load_records(tmp_path / "old"), new)  # one seed each, no spread to go by
    assert {c.test for c in bare.changes} == {IMAGES_ONLY} and any(c.real for c in bare.changes)
    assert "Seed-to-seed variation is not covered" in bare.explanation()
    referred = diff_records(load_records(tmp_path / "old"), new, reference=published)
    assert [(c.test, c.p_value) for c in referred.changes] == [(c.test, c.p_value) for c in floored.changes]


def test_the_paired_test_on_the_same_test_images_finds_a_drop_that_the_intervals_miss(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for detector in ("a", "b"):
        scores = logits(detector, 0)
        record = write_record(old, detector, 0, scores)
        if detector == "a":  # slightly worse fakes
            worse = write_record(new, "a", 0, scores - 0.15 * scores.std() * LABELS, record.threshold)
        else:  # the scores of one real and one fake adjacent in score order swapped: AUC moves by one pair
            order = np.argsort(scores, kind="stable")
            i = next(i for i in range(len(order) - 1) if LABELS[order[i]] == 0 and LABELS[order[i + 1]] == 1)
            swapped = scores.copy()
            swapped[order[[i, i + 1]]] = scores[order[[i + 1, i]]]
            write_record(new, "b", 0, swapped, record.threshold)
    result = diff_records(load_records(old), load_records(new))
    auc = {c.cell.detector: c for c in result.changes if c.metric == "roc_auc"}
    stored = load_records(old)
    old_ci = next(r for r in stored.values() if r.detector == "a").metrics["roc_auc"].ci
    assert worse.metrics["roc_auc"].ci[1] > old_ci[0]  # the stored intervals overlap ...
    assert auc["a"].test == IMAGES_ONLY and auc["a"].difference_ci[1] < 0  # ... the paired interval excludes 0
    assert auc["a"].verdict == "regression"
    assert auc["b"].delta == pytest.approx(-1 / N_PAIRS) and auc["b"].verdict == "within noise"

    cli = invoke("leaderboard", "diff", old, new)
    assert cli.exit_code == 1
    line = next(line for line in cli.output.splitlines() if "**regression**" in line and "roc_auc" in line)
    assert "paired bootstrap" in line and "| a " in line
    assert f"Tests used (changed numbers): {IMAGES_ONLY}:" in cli.output

    shutil.rmtree(new / "scores")  # without score files: the old rule, and it says so
    fallback = diff_records(load_records(old), load_records(new))
    assert {c.test for c in fallback.changes} == {"non-overlap of intervals (no score files)"}
    assert not fallback.regressions  # overlapping intervals: the conservative rule misses the drop


N_PAIRS = N * N
