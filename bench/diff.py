"""Compare two sets of result records cell by cell, as Markdown fit for a pull-request comment.

Cells are matched by identity (detector, training set, test source, perturbation, seed). A change of a
metric is *real* when the old and new confidence intervals do not overlap; without intervals on both
sides (suites with ``bootstrap: 0``) every change counts as real. A *regression* is a real change for
the worse by more than the tolerance (higher is better for every metric but ``evasion_rate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.records import IDENTITY_FIELDS, CellIdentity, by_identity, describe, identity, metric_text

LOWER_IS_BETTER = frozenset({"evasion_rate"})
HEADLINE = ("accuracy", "roc_auc")  # shown for added and removed cells


@dataclass(frozen=True)
class Change:
    """One metric of one cell whose value differs between the old and the new record."""

    cell: CellIdentity
    metric: str
    old: float
    new: float
    old_ci: tuple[float, float] | None
    new_ci: tuple[float, float] | None
    tolerance: float

    @property
    def delta(self) -> float:
        return self.new - self.old

    @property
    def real(self) -> bool:
        """The intervals do not overlap (or one side has none)."""
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
            return "within intervals"
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
            "A change is real when the old and new confidence intervals do not overlap; a regression is a real "
            f"change for the worse by more than {self.tolerance:g} (for `evasion_rate`, lower is better).",
            "",
        ]
        if real:
            lines += [_changes_table(real), ""]
        if noise:
            lines += ["<details><summary>" f"{len(noise)} other changed numbers (within the intervals or the "
                      "tolerance)</summary>", "", _changes_table(noise), "", "</details>", ""]
        for heading, records in (("Added cells", self.added), ("Removed cells", self.removed)):
            if records:
                lines += [f"#### {heading}", "", *(f"- {_headline(r)}" for r in records), ""]
        return "\n".join(lines)


def _changes_table(changes: list[Change]) -> str:
    ordered = sorted(changes, key=lambda c: (c.verdict != "regression", -abs(c.delta)))
    rows = [
        dict(zip([f.capitalize() for f in IDENTITY_FIELDS], c.cell, strict=True)) | {
            "Metric": c.metric, "Old": metric_text(c.old, c.old_ci), "New": metric_text(c.new, c.new_ci),
            "Change": f"{c.delta:+.3f}", "Verdict": f"**{c.verdict}**" if c.verdict == "regression" else c.verdict,
        }
        for c in ordered
    ]
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _headline(record: dict) -> str:
    shown = [f"{name} {metric_text(m['value'], m['ci'])}" for name in HEADLINE
             if (m := record["metrics"].get(name)) is not None]
    return f"{describe(identity(record))}: {'; '.join(shown)}"


def _value(metric: dict) -> tuple[float | None, tuple[float, float] | None]:
    value = metric.get("value")
    if value is None or not math.isfinite(value):
        return None, None
    return float(value), tuple(metric["ci"]) if metric.get("ci") else None


def diff_records(old: dict[Path, dict], new: dict[Path, dict], tolerance: float = 0.01) -> Diff:
    """Match ``old`` and ``new`` records (by path, as ``load_records`` gives them) by cell; list changed metrics."""
    before, after = by_identity(old), by_identity(new)
    result = Diff(tolerance)
    result.added = [after[c] for c in sorted(after.keys() - before.keys())]
    result.removed = [before[c] for c in sorted(before.keys() - after.keys())]
    for cell in sorted(before.keys() & after.keys()):
        result.matched += 1
        old_metrics, new_metrics = before[cell]["metrics"], after[cell]["metrics"]
        for name in sorted(old_metrics.keys() & new_metrics.keys()):
            (old_value, old_ci), (new_value, new_ci) = _value(old_metrics[name]), _value(new_metrics[name])
            if old_value is not None and new_value is not None and old_value != new_value:
                result.changes.append(Change(cell, name, old_value, new_value, old_ci, new_ci, tolerance))
    return result
