"""Compare two sets of result records cell by cell, as Markdown fit for a pull-request comment.

Records are matched by cell (detector, training set, test source, perturbation) and seed. Every changed number
gets a two-sided t test of "no change" whose variance says what varies:

- A cell with several seeds on both sides is compared as a whole: the change of the mean over seeds, with the
  seed-aware test of :func:`bench.statistics.paired_bootstrap` (test images bootstrapped on the two sides' score
  files, seeds paired by seed number when both sides have the same seeds); without score files, a t test over the
  stored per-seed values.
- A record with one seed on a side is compared with its namesake (same seed): the paired bootstrap over the test
  images of the two score files covers the test images only, so where a folder (``reference``, else the old one,
  else the new one) has several seeds of that cell, twice their variance across seeds is added as the noise floor
  of one seed against another; otherwise the report says that seed-to-seed variation is not covered. Metrics the
  score files do not give (``evasion_rate``), or records without score files, use the variance their stored
  intervals imply plus that floor; without a floor they fall back to the old and new intervals not overlapping,
  and without intervals on both sides (suites with ``bootstrap: 0``) every change counts as real.

A change is *real* when its p-value, adjusted by Holm's method across every tested number of the diff, is below
1 - level (5%), so that a diff of two runs that differ only in seed noise reports no real change with
probability 95% or more. A *regression* is a real change for the worse by more than the tolerance (higher is
better unless the metric's declaration (:mod:`bench.metrics`) says otherwise, as for ``evasion_rate``). Each change
says which test decided it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from bench.compare import Cell
from bench.integrity import check_records, load_scores
from bench.metrics import METRICS, REGISTRY, headline_metrics, metric_named
from bench.records import IDENTITY_FIELDS, CellIdentity, Metric, Record, metric_text, unique_cells
from bench.statistics import holm, paired_bootstrap, seed_difference_test, t_test

SEEDS = "t test over training seeds and test images (paired bootstrap)"
SEED_VALUES = "t test over the stored per-seed values (test-image variation only as it moves them)"
FLOOR = "t test over test images (paired bootstrap) + seed spread"
STORED_FLOOR = "t test from the stored intervals + seed spread"
IMAGES_ONLY = "t test over test images only (paired bootstrap); seed-to-seed variation not covered"
NON_OVERLAP = "non-overlap of intervals"  # the start of every fallback test


@dataclass(frozen=True)
class Change:
    """One metric of one cell whose value differs between the old and the new records.

    ``cell`` is a record's identity, or a :class:`bench.compare.Cell` for a change of the mean over several seeds
    (``seeds`` then says which, e.g. "0, 1, 2 → 0, 1, 2"). ``difference_ci`` is the interval of new - old and
    ``p_value`` / ``p_holm`` its test's p-value before and after Holm's adjustment across the diff, where there is
    a test; ``test`` names it (or the non-overlap rule and why it was used).
    """

    cell: CellIdentity | Cell
    metric: str
    old: float
    new: float
    old_ci: tuple[float, float] | None
    new_ci: tuple[float, float] | None
    tolerance: float
    difference_ci: tuple[float, float] | None = None
    test: str = f"{NON_OVERLAP} (no score files)"
    p_value: float | None = None
    p_holm: float | None = None
    alpha: float = 0.05
    seeds: str | None = None

    @property
    def delta(self) -> float:
        return self.new - self.old

    @property
    def real(self) -> bool:
        """The (Holm-adjusted) p-value is below ``alpha``; without a test, the interval of the difference excludes 0,
        else the old and new intervals do not overlap (or one side has none)."""
        p = self.p_holm if self.p_holm is not None else self.p_value
        if p is not None:
            return p < self.alpha
        if self.difference_ci is not None:
            return self.difference_ci[0] > 0 or self.difference_ci[1] < 0
        if self.old_ci is None or self.new_ci is None:
            return True
        return self.old_ci[1] < self.new_ci[0] or self.new_ci[1] < self.old_ci[0]

    @property
    def worse_by(self) -> float:
        """How much worse the new value is (negative when it is better)."""
        return -self.delta if metric_named(self.metric).higher_is_better else self.delta

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
    added: list[Record] = field(default_factory=list)
    removed: list[Record] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "regression"]

    def explanation(self) -> str:
        """How this diff told real changes from noise: which tests decided how many changed numbers."""
        tests = pd.Series([c.test for c in self.changes], dtype=object).value_counts(sort=False)
        used = "; ".join(f"{test}: {count}" for test, count in tests.items())
        uncovered = sum(c.test == IMAGES_ONLY for c in self.changes)
        return (
            "Each changed number gets a two-sided t test of no change. A cell with several seeds on both sides is "
            "compared as the mean over its seeds, with a variance that adds the paired bootstrap over the test images "
            "(both sides' score files) to the variance across seeds (paired by seed number where both sides have the "
            "same seeds). A record with one seed on a side is compared with the same seed on the other: the paired "
            "bootstrap covers the test images only, so twice the cell's variance across seeds, where a folder has "
            "several seeds of it, is added as the noise floor of one seed against another. A change is real when its "
            "p-value, adjusted by Holm's method across every tested number of this diff, is below 5%; numbers without "
            "a test fall back to the old and new intervals not overlapping (a conservative rule), and without "
            "intervals every change is real. A regression is a real change for the worse by more than "
            f"{self.tolerance:g} (for {', '.join(f'`{n}`' for n, m in REGISTRY.items() if not m.higher_is_better)}, "
            "lower is better)."
            + (f" Tests used (changed numbers): {used}." if used else "")
            + (f" Seed-to-seed variation is not covered for {uncovered} of them (one seed on a side and no folder "
               "with several seeds of their cell): a change of random seed alone can look real there."
               if uncovered else "")
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


def _p_text(value: float | None) -> str:
    return "–" if value is None else "< 1e-06" if value < 1e-6 else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _change_text(change: Change) -> str:
    """The change, with the interval of the difference where there is one."""
    ci = change.difference_ci
    return f"{change.delta:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def _changes_table(changes: list[Change]) -> str:
    ordered = sorted(changes, key=lambda c: (c.verdict != "regression", -abs(c.delta)))
    rows = [
        dict(zip([f.capitalize() for f in IDENTITY_FIELDS], [*c.cell[:5], c.seeds or c.cell[5]], strict=True)) | {
            "Metric": c.metric, "Old": metric_text(c.old, c.old_ci), "New": metric_text(c.new, c.new_ci),
            "Change": _change_text(c), "p (Holm)": _p_text(c.p_holm),
            "Verdict": f"**{c.verdict}**" if c.verdict == "regression" else c.verdict, "Test": c.test,
        }
        for c in ordered
    ]
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _headline(record: Record) -> str:
    """The record's cell and its headline metrics (its suite's, else the default ones)."""
    names = headline_metrics((record.suite_config or {}).get("headline_metrics"))
    shown = [f"{name} {metric_text(m.value, m.ci)}" for name in names if (m := record.metrics.get(name)) is not None]
    return f"{record.identity.describe()}: {'; '.join(shown)}"


def _value(metric: Metric) -> tuple[float | None, tuple[float, float] | None]:
    if metric.value is None or not math.isfinite(metric.value):
        return None, None
    return metric.value, metric.ci


Spread = dict[str, tuple[float, int]]  # metric -> (variance across seeds, seeds)


def _by_cell(records: dict[Path, Record]) -> dict[Cell, list[tuple[Record, Path]]]:
    """Each cell's records (with their results folders), by seed."""
    cells: dict[Cell, list[tuple[Record, Path]]] = {}
    for path, record in records.items():
        cells.setdefault(Cell(*record.identity[:5]), []).append((record, path.parent.parent))
    return {cell: sorted(group, key=lambda pair: pair[0].seed) for cell, group in cells.items()}


def _spread(group: Sequence[tuple[Record, Path]]) -> Spread:
    """Each metric's variance across the seeds of one cell (metrics stored by 2 seeds or more)."""
    values: dict[str, list[float]] = {}
    for record, _ in group:
        for name, metric in record.metrics.items():
            if (value := _value(metric)[0]) is not None:
                values.setdefault(name, []).append(value)
    return {name: (float(np.var(v, ddof=1)), len(v)) for name, v in values.items() if len(v) > 1}


def _spreads(*folders: dict[Cell, list[tuple[Record, Path]]]) -> dict[Cell, Spread]:
    """Each cell's seed spread from the first folder that has several seeds of it."""
    found: dict[Cell, Spread] = {}
    for cells in folders:
        for cell, group in cells.items():
            if cell not in found and len(group) > 1:
                found[cell] = _spread(group)
    return found


def _runs(group: Sequence[tuple[Record, Path]]) -> list | None:
    """The group's runs from its score files, or None when a record has none."""
    runs = [load_scores(root, record) for record, root in group]
    return None if any(run is None for run in runs) else runs


def _mean(values: list[float]) -> float:
    """The mean of per-seed values, exact whatever their order (a cell whose seeds were renumbered is unchanged)."""
    return math.fsum(values) / len(values)


def _cell_changes(cell: Cell, olds: list[tuple[Record, Path]], news: list[tuple[Record, Path]],
                  tolerance: float) -> list[Change]:
    """The changes of the means over seeds of a cell with several seeds on both sides."""
    names = set.intersection(*(set(record.metrics) for record, _ in [*olds, *news]))
    values = {name: ([_value(r.metrics[name])[0] for r, _ in olds], [_value(r.metrics[name])[0] for r, _ in news])
              for name in sorted(names)}
    changed = {name: (old, new) for name, (old, new) in values.items()
               if None not in old and None not in new and _mean(old) != _mean(new)}
    if not changed:
        return []
    old_seeds, new_seeds = [r.seed for r, _ in olds], [r.seed for r, _ in news]
    paired, boot = old_seeds == new_seeds, news[0][0].bootstrap
    level = boot.level
    tested = None
    if any(name in METRICS for name in changed) and boot.resamples > 1 and len(
            {r.scored_images for r, _ in [*olds, *news]}) == 1:
        old_runs, new_runs = _runs(olds), _runs(news)
        if old_runs and new_runs:
            tested = paired_bootstrap(new_runs, old_runs, boot.resamples, level, boot.seed, paired=paired)["metrics"]
    seeds = f"{', '.join(map(str, old_seeds))} → {', '.join(map(str, new_seeds))}"
    changes = []
    for name, (old, new) in changed.items():
        result = tested[name] if tested and name in tested else seed_difference_test(new, old, 0.0, paired, level)
        changes.append(Change(cell, name, _mean(old), _mean(new), None, None, tolerance,
                              tuple(result["ci"]), SEEDS if tested and name in tested else SEED_VALUES,
                              result["p_value"], alpha=1 - level, seeds=seeds))
    return changes


def _stored_variance(old_ci: tuple[float, float] | None, new_ci: tuple[float, float] | None,
                     level: float) -> float | None:
    """The variance of new - old that two stored intervals imply (as normal intervals, added: conservative for two
    measurements on the same images); None without both."""
    if old_ci is None or new_ci is None:
        return None
    z = float(norm.ppf(0.5 + level / 2))
    return sum(((high - low) / (2 * z)) ** 2 for low, high in (old_ci, new_ci))


def _record_changes(old: Record, old_root: Path, new: Record, new_root: Path, spread: Spread | None,
                    tolerance: float) -> list[Change]:
    """The changed metrics of one record against its namesake (one seed on a side), each tested."""
    changed = []
    for name in sorted(old.metrics.keys() & new.metrics.keys()):
        (old_value, old_ci), (new_value, new_ci) = (_value(r.metrics[name]) for r in (old, new))
        if old_value is not None and new_value is not None and old_value != new_value:
            changed.append((name, old_value, new_value, old_ci, new_ci))
    if not changed:
        return []
    level, cell = new.bootstrap.level, new.identity
    images, why = None, ""
    if any(name in METRICS for name, *_ in changed):
        images, why = _images_test(old, old_root, new, new_root)
    changes = []
    for name, old_value, new_value, old_ci, new_ci in changed:
        floor = (spread or {}).get(name)
        seed_term = [(2 * floor[0], floor[1] - 1.0)] if floor else []
        change = Change(cell, name, old_value, new_value, old_ci, new_ci, tolerance, alpha=1 - level,
                        test=why or f"{NON_OVERLAP} (no paired test for this metric)")
        delta = new_value - old_value
        if images is not None and name in images:
            result = t_test(delta, [images[name], *seed_term], level, (-1.0, 1.0))
            change = replace(change, difference_ci=tuple(result["ci"]), p_value=result["p_value"],
                             test=f"{FLOOR} of {floor[1]} seeds" if floor else IMAGES_ONLY)
        elif floor and (variance := _stored_variance(old_ci, new_ci, level)) is not None:
            result = t_test(delta, [(variance, math.inf), *seed_term], level, (-1.0, 1.0))
            change = replace(change, difference_ci=tuple(result["ci"]), p_value=result["p_value"],
                             test=f"{STORED_FLOOR} of {floor[1]} seeds")
        changes.append(change)
    return changes


def _images_test(old: Record, old_root: Path, new: Record,
                 new_root: Path) -> tuple[dict[str, tuple[float, float]] | None, str]:
    """Each metric of METRICS's (variance, degrees of freedom) of new - old from the paired bootstrap over the test
    images of the two score files, or None and why there is none."""
    if old.scored_images != new.scored_images:
        return None, f"{NON_OVERLAP} (different test images)"
    old_run, new_run = load_scores(old_root, old), load_scores(new_root, new)
    if old_run is None or new_run is None:
        return None, f"{NON_OVERLAP} (no score files)"
    boot = new.bootstrap
    if boot.resamples < 2:
        return None, f"{NON_OVERLAP} (no bootstrap resamples)"
    result = paired_bootstrap([new_run], [old_run], boot.resamples, boot.level, boot.seed)
    return {name: (m["se"] ** 2, boot.resamples - 1.0) for name, m in result["metrics"].items()}, ""


def diff_records(old: dict[Path, Record], new: dict[Path, Record], tolerance: float = 0.01,
                 reference: dict[Path, Record] | None = None) -> Diff:
    """Match ``old`` and ``new`` records (by path, as ``load_records`` gives them:
    ``<folder>/records/<key>.json``, with score files under ``<folder>``) by cell; list changed metrics and test each
    change (see the module docstring). ``reference``: records whose seed spread is the noise floor of one-seed
    comparisons (default: the old folder's, else the new folder's, for cells with several seeds there). A record that
    its own score file contradicts is refused (:func:`bench.integrity.check_records`)."""
    for records in (old, new):
        check_records(records)
    before, after = unique_cells(old), unique_cells(new)
    old_roots, new_roots = ({r.key: path.parent.parent for path, r in records.items()} for records in (old, new))
    result = Diff(tolerance)
    result.added = [after[c] for c in sorted(after.keys() - before.keys())]
    result.removed = [before[c] for c in sorted(before.keys() - after.keys())]
    old_cells, new_cells = _by_cell(old), _by_cell(new)
    spreads = _spreads(*([_by_cell(reference)] if reference is not None else [old_cells, new_cells]))
    matched = sorted(before.keys() & after.keys())
    result.matched = len(matched)
    changes = []
    for cell in sorted(old_cells.keys() & new_cells.keys()):
        olds, news = old_cells[cell], new_cells[cell]
        if len(olds) > 1 and len(news) > 1:
            changes += _cell_changes(cell, olds, news, tolerance)
            continue
        for one in (c for c in matched if c[:5] == cell):
            old_record, new_record = before[one], after[one]
            changes += _record_changes(old_record, old_roots[old_record.key], new_record, new_roots[new_record.key],
                                       spreads.get(cell), tolerance)
    tested = [c for c in changes if c.p_value is not None]
    adjusted = iter(holm([c.p_value for c in tested]) if tested else [])
    result.changes = [replace(c, p_holm=float(next(adjusted))) if c.p_value is not None else c for c in changes]
    return result

