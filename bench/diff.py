"""Compare two sets of result records cell by cell, as Markdown fit for a pull-request comment.

Cells are matched by identity (detector, training set, test source, perturbation, seed). A change of a
metric is *real* when the interval of the difference new - old excludes 0: a paired bootstrap over the test
images on the two records' score files, where both were scored on the same test images (equal sha256 of the
real and the fake test images). Without that (records without score files, other test images, or a metric
the paired bootstrap does not cover, such as ``evasion_rate``) it falls back to the old and new intervals not
overlapping, and without intervals on both sides (suites with ``bootstrap: 0``) every change counts as real.
A *regression* is a real change for the worse by more than the tolerance (higher is better for every metric
but ``evasion_rate``). Each change says which test decided it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.compare import load_run, scored_images
from bench.metrics import METRICS
from bench.records import IDENTITY_FIELDS, CellIdentity, by_identity, identity, metric_text
from bench.statistics import paired_bootstrap

LOWER_IS_BETTER = frozenset({"evasion_rate"})
HEADLINE = ("accuracy", "roc_auc")  # shown for added and removed cells
PAIRED = "paired bootstrap"
NON_OVERLAP = "non-overlap of intervals"  # the start of every fallback test


@dataclass(frozen=True)
class Change:
    """One metric of one cell whose value differs between the old and the new record.

    ``difference_ci`` is the paired-bootstrap interval of new - old where there is one; ``test`` names the test
    that decides whether the change is real (:data:`PAIRED`, or the non-overlap rule and why it was used).
    """

    cell: CellIdentity
    metric: str
    old: float
    new: float
    old_ci: tuple[float, float] | None
    new_ci: tuple[float, float] | None
    tolerance: float
    difference_ci: tuple[float, float] | None = None
    test: str = f"{NON_OVERLAP} (no score files)"

    @property
    def delta(self) -> float:
        return self.new - self.old

    @property
    def real(self) -> bool:
        """The interval of the difference excludes 0; without one, the old and new intervals do not overlap (or
        one side has none)."""
        if self.difference_ci is not None:
            return self.difference_ci[0] > 0 or self.difference_ci[1] < 0
        if self.old_ci is None or self.new_ci is None:
            return True
        return self.old_ci[1] < self.new_ci[0] or self.new_ci[1] < self.old_ci[0]

    @property
    def worse_by(self) -> float:
        """How much worse the new value is (negative when it is better)."""
        return self.delta if self.metric in LOWER_IS_BETTER else -self.delta

    @property
    def verdict(self) -> str:
        if not self.real:
            return "within noise"
        if abs(self.delta) <= self.tolerance:
            return "real, within tolerance"
        return "regression" if self.worse_by > 0 else "improvement"


@dataclass
class Diff:
    """The outcome of comparing an old and a new set of records."""

    tolerance: float
    matched: int = 0
    changes: list[Change] = field(default_factory=list)
    added: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "regression"]

    def explanation(self) -> str:
        """How this diff told real changes from noise: which tests decided how many changed numbers."""
        tests = pd.Series([c.test for c in self.changes], dtype=object).value_counts(sort=False)
        used = "; ".join(f"{test}: {count}" for test, count in tests.items())
        return (
            "A change is real when the interval of the difference new − old excludes 0, from a paired bootstrap over "
            "the test images on the two runs' per-image scores where both cells were scored on the same test images "
            "(equal sha256) and have score files. Otherwise it falls back to the old and new intervals not "
            "overlapping (a conservative rule), and without intervals every change is real. A regression is a real "
            f"change for the worse by more than {self.tolerance:g} (for `evasion_rate`, lower is better)."
            + (f" Tests used (changed numbers): {used}." if used else "")
        )

    def markdown(self, old_name: str, new_name: str) -> str:
        """The report: a summary line, the real changes, the rest folded away, then added and removed cells."""
        real = [c for c in self.changes if c.verdict in ("regression", "improvement")]
        noise = [c for c in self.changes if c.verdict not in ("regression", "improvement")]
        regressions = len(self.regressions)
        lines = [
            f"### Leaderboard diff: `{old_name}` → `{new_name}`",
            "",
            f"{self.matched} cells in both, {len(self.added)} added, {len(self.removed)} removed; "
            f"{len(self.changes)} numbers changed: **{regressions} regression{'s' if regressions != 1 else ''}**, "
            f"{len(real) - regressions} improvement{'s' if len(real) - regressions != 1 else ''}.",
            "",
            self.explanation(),
            "",
        ]
        if real:
            lines += [_changes_table(real), ""]
        if noise:
            lines += ["<details><summary>" f"{len(noise)} other changed numbers (within noise or the "
                      "tolerance)</summary>", "", _changes_table(noise), "", "</details>", ""]
        for heading, records in (("Added cells", self.added), ("Removed cells", self.removed)):
            if records:
                lines += [f"#### {heading}", "", *(f"- {_headline(r)}" for r in records), ""]
        return "\n".join(lines)


def _change_text(change: Change) -> str:
    """The change, with the paired interval of the difference where there is one."""
    ci = change.difference_ci
    return f"{change.delta:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def _changes_table(changes: list[Change]) -> str:
    ordered = sorted(changes, key=lambda c: (c.verdict != "regression", -abs(c.delta)))
    rows = [
        dict(zip([f.capitalize() for f in IDENTITY_FIELDS], c.cell, strict=True)) | {
            "Metric": c.metric, "Old": metric_text(c.old, c.old_ci), "New": metric_text(c.new, c.new_ci),
            "Change": _change_text(c), "Verdict": f"**{c.verdict}**" if c.verdict == "regression" else c.verdict,
            "Test": c.test,
        }
        for c in ordered
    ]
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _headline(record: dict) -> str:
    shown = [f"{name} {metric_text(m['value'], m['ci'])}" for name in HEADLINE
             if (m := record["metrics"].get(name)) is not None]
    return f"{identity(record).describe()}: {'; '.join(shown)}"


def _value(metric: dict) -> tuple[float | None, tuple[float, float] | None]:
    value = metric.get("value")
    if value is None or not math.isfinite(value):
        return None, None
    return float(value), tuple(metric["ci"]) if metric.get("ci") else None


def _paired(old: dict, old_root: Path, new: dict, new_root: Path) -> tuple[dict[str, list[float]] | None, str]:
    """The paired-bootstrap intervals of new - old for every metric of METRICS, or None and why there are none."""
    if scored_images(old) != scored_images(new):
        return None, f"{NON_OVERLAP} (different test images)"
    old_run, new_run = load_run(old_root, old), load_run(new_root, new)
    if old_run is None or new_run is None:
        return None, f"{NON_OVERLAP} (no score files)"
    boot = new["bootstrap"]
    if not boot["resamples"]:
        return None, f"{NON_OVERLAP} (no bootstrap resamples)"
    result = paired_bootstrap([new_run], [old_run], int(boot["resamples"]), float(boot["level"]), int(boot["seed"]))
    return {name: result["metrics"][name]["ci"] for name in METRICS}, PAIRED


def diff_records(old: dict[Path, dict], new: dict[Path, dict], tolerance: float = 0.01) -> Diff:
    """Match ``old`` and ``new`` records (by path, as ``load_records`` gives them: ``<folder>/records/<key>.json``,
    with score files under ``<folder>``) by cell; list changed metrics and test each change."""
    before, after = by_identity(old), by_identity(new)
    old_roots, new_roots = ({r["key"]: path.parent.parent for path, r in records.items()} for records in (old, new))
    result = Diff(tolerance)
    result.added = [after[c] for c in sorted(after.keys() - before.keys())]
    result.removed = [before[c] for c in sorted(before.keys() - after.keys())]
    for cell in sorted(before.keys() & after.keys()):
        result.matched += 1
        old_record, new_record = before[cell], after[cell]
        changed = []
        for name in sorted(old_record["metrics"].keys() & new_record["metrics"].keys()):
            (old_value, old_ci), (new_value, new_ci) = (_value(r["metrics"][name]) for r in (old_record, new_record))
            if old_value is not None and new_value is not None and old_value != new_value:
                changed.append((name, old_value, new_value, old_ci, new_ci))
        if not changed:
            continue
        intervals, test = None, ""
        if any(name in METRICS for name, *_ in changed):
            intervals, test = _paired(old_record, old_roots[old_record["key"]], new_record,
                                      new_roots[new_record["key"]])
        fallback = test if intervals is None and test else f"{NON_OVERLAP} (no paired test for this metric)"
        for name, old_value, new_value, old_ci, new_ci in changed:
            paired = intervals is not None and name in intervals
            result.changes.append(Change(cell, name, old_value, new_value, old_ci, new_ci, tolerance,
                                         tuple(intervals[name]) if paired else None, test if paired else fallback))
    return result
