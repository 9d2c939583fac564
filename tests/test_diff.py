"""`bench leaderboard diff`: cells matched by identity, real changes told from noise, regressions fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.diff import Change

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
