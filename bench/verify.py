"""Re-measure published records and report every number that drifted (as RobustBench re-checks its zoo).

Each record carries the suite that produced it (``suite_config``). Records of one suite and detector are
re-measured together: the suite is rebuilt, restricted to that detector and the records' seeds, and run
into a temporary results folder against the same data directory, so cached checkpoints are reused (and a
missing one is retrained, which is deterministic on a CPU). What is compared:

- Metrics and attribution scores must come back within their tolerance of the published value. With
  ``limit`` the test sources are cut to at most that many images (a different, smaller draw, so its numbers
  scatter more than the published intervals say): a number drifted when its re-measured confidence interval
  does not reach the published interval widened by the tolerance (where either side has no interval, its
  value stands in for it). The tolerance is ``tolerance`` when given, else the published seed spread of the
  *other* seeds: the standard deviation of that number across the training seeds of the record's cell (its
  identity minus the seed) other than the record's own, at least ``FLOOR``, where there are two or more others;
  else the fixed ``DEFAULT_TOLERANCE``. A record's own value never widens its own allowance.
- Before anything is re-measured, every published record is checked against its own score file
  (:func:`bench.integrity.check_records`); one that disagrees is refused, naming the file and the field.
- Decision thresholds (the record's and its training's) must agree to ``THRESHOLD_RTOL`` (relative); for a
  record trained on another CPU than this machine's a difference is informational (not comparable across
  hardware), not a drift.
- Source-attribution counts must match exactly (not compared with ``limit``, which scores other images).
- A record, or its attribution, published as not applicable must come back not applicable, and vice versa.
"""

from __future__ import annotations

import fnmatch
import math
import statistics
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from bench.compare import Cell
from bench.integrity import check_records
from bench.provenance import content_key, hardware
from bench.records import IDENTITY_FIELDS, Attribution, CellIdentity, Metric, Record, load_records, metric_text
from bench.runner import Runner
from bench.suite import Suite, SuiteError

FLOOR = 0.005  # the smallest tolerance taken from a seed spread
DEFAULT_TOLERANCE = 0.01  # where no cell of the folder has several seeds
THRESHOLD_RTOL = 1e-6


@dataclass(frozen=True)
class Tolerance:
    """How far a number may move, and where that allowance came from."""

    value: float
    basis: str

    def __str__(self) -> str:
        return f"± {self.value:.4g} ({self.basis})"


@dataclass(frozen=True)
class Drift:
    """A published number (or applicability) that the re-measurement did not reproduce, as the report prints it."""

    record: Path
    cell: CellIdentity
    number: str  # e.g. "accuracy", "threshold", "attribution saliency faithfulness"
    published: str
    measured: str  # "not re-measured" where the cell did not come back
    allowed: str
    tolerance: str  # the allowance and where it came from


@dataclass
class Verification:
    """What ``verify`` re-measured and what it found (``tolerance`` None: each number's seed spread)."""

    tolerance: float | None
    limit: int | None
    records: int = 0
    numbers: int = 0
    runs: int = 0
    drifts: list[Drift] = field(default_factory=list)
    not_comparable: list[Drift] = field(default_factory=list)  # thresholds of records trained on other hardware
    unverifiable: dict[Path, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.drifts and not self.unverifiable

    def summary(self) -> str:
        tolerance = (f"{self.tolerance:g}" if self.tolerance is not None
                     else f"each number's spread over its other seeds (at least {FLOOR:g})")
        rule = (f"published intervals widened by {tolerance} (re-measured intervals on at most {self.limit} "
                f"test images per source must reach them) and thresholds to {THRESHOLD_RTOL:g} relative"
                if self.limit else f"published values ± {tolerance}, thresholds to {THRESHOLD_RTOL:g} relative "
                "and source-attribution counts exactly")
        informational = (f", {len(self.not_comparable)} not comparable across hardware (informational)"
                         if self.not_comparable else "")
        return (f"Re-measured {self.records} records ({self.numbers} numbers) in {self.runs} run"
                f"{'s' if self.runs != 1 else ''} against the "
                f"{rule}: {len(self.drifts)} drifted, {len(self.unverifiable)} could not be re-measured"
                f"{informational}.")

    def markdown(self) -> str:
        """The report: a summary line, every drifted number, the thresholds not comparable across hardware, and
        the records that could not be re-measured."""
        lines = ["# Verification of published records", "", self.summary(), ""]
        if self.drifts:
            lines += ["## Drifted numbers", "", _table(self.drifts), ""]
        if self.not_comparable:
            lines += ["## Not comparable across hardware", "",
                      f"Trained on another CPU than this machine's ({hardware()['cpu']}): these thresholds differ, "
                      "which is not a drift.", "", _table(self.not_comparable), ""]
        if self.unverifiable:
            lines += ["## Not re-measured", "", *(f"- `{p}`: {why}" for p, why in self.unverifiable.items()), ""]
        return "\n".join(lines)


def _table(drifts: list[Drift]) -> str:
    rows = [
        dict(zip([f.capitalize() for f in IDENTITY_FIELDS], d.cell, strict=True)) | {
            "Number": d.number, "Published": d.published, "Re-measured": d.measured, "Allowed": d.allowed,
            "Tolerance": d.tolerance, "Record": str(d.record),
        }
        for d in drifts
    ]
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _measures(record: Record) -> dict[str, Metric]:
    """The record's numbers compared within a tolerance, by name: its metrics, then its attribution scores
    (``attribution METHOD SCORE``)."""
    found = dict(record.metrics)
    for method, scores in (record.attribution.methods if record.attribution else {}).items():
        found |= {f"attribution {method} {score}": metric for score, metric in scores.items()}
    return found


def _value(metric: Metric) -> float:
    return float("nan") if metric.value is None else metric.value


class _Tolerances:
    """Each number's tolerance for the records of one folder: ``given``, else from the seed spreads of its cells,
    never from the record under test (whose own value would widen its own allowance)."""

    def __init__(self, records: Iterable[Record], given: float | None) -> None:
        self.given = given
        self.values: dict[Cell, dict[str, dict[int, float]]] = {}  # cell -> number -> seed -> published value
        if given is not None:
            return
        for record in records:
            values = self.values.setdefault(Cell(*record.identity[:5]), {})
            for name, metric in _measures(record).items():
                if not math.isnan(value := _value(metric)):
                    values.setdefault(name, {})[record.seed] = value

    def of(self, record: Record, name: str) -> Tolerance:
        """The tolerance of the number ``name`` of ``record``: the spread of the cell's other seeds where it has two
        or more others (at least ``FLOOR``), else the fixed ``DEFAULT_TOLERANCE``."""
        if self.given is not None:
            return Tolerance(self.given, "--tolerance")
        values = self.values.get(Cell(*record.identity[:5]), {}).get(name, {})
        others = [value for seed, value in values.items() if seed != record.seed]
        if len(others) < 2:
            return Tolerance(DEFAULT_TOLERANCE, f"default {DEFAULT_TOLERANCE:g}; fewer than 2 other seeds")
        spread, basis = statistics.stdev(others), f"seed spread of this cell's other {len(others)} seeds"
        return Tolerance(spread, basis) if spread >= FLOOR else Tolerance(FLOOR, f"floor; {basis}: {spread:.2g}")


def _matches(record: Record, pattern: str | None) -> bool:
    return pattern is None or any(fnmatch.fnmatchcase(record.detector, p) for p in pattern.split(","))


def _rebuilt(record: Record, seeds: list[int], limit: int | None) -> Suite:
    """The record's suite, restricted to its detector and ``seeds``, with at most ``limit`` test images."""
    suite = Suite.model_validate(record.suite_config)
    current = suite.test.limit
    test_limit = limit if limit is not None and (current is None or limit < current) else None
    return suite.with_overrides(detectors=record.detector, seeds=seeds, test_limit=test_limit)


def _applicability(part: Record | Attribution) -> str:
    return f"not applicable ({part.not_applicable})" if part.not_applicable else "applicable"


@dataclass
class _Check:
    """The checks of one published record against its re-measurement (``measured`` None: its cell did not come
    back), adding what differs to ``result``."""

    path: Path
    published: Record
    measured: Record | None
    result: Verification

    def run(self, tolerances: _Tolerances) -> None:
        self.applicability()
        self.measures(tolerances)
        self.thresholds()
        if not self.result.limit:
            self.counts()

    def drift(self, number: str, old: str, new: str | None, allowed: str, tolerance: str,
              informational: bool = False) -> None:
        drift = Drift(self.path, self.published.identity, number, old, "not re-measured" if new is None else new,
                      allowed, tolerance)
        (self.result.not_comparable if informational else self.result.drifts).append(drift)

    def applicability(self) -> None:
        """The cell, and its attribution, come back (not) applicable as published."""
        if self.measured is None:
            return
        parts: list[tuple[str, Record | Attribution, Record | Attribution]] = [("cell", self.published, self.measured)]
        if self.published.attribution is not None:
            parts.append(("attribution", self.published.attribution, self.measured.attribution or Attribution()))
        for number, old, new in parts:
            if bool(old.not_applicable) != bool(new.not_applicable):
                self.drift(f"{number} applicability", _applicability(old), _applicability(new), "the same", "exact")

    def measures(self, tolerances: _Tolerances) -> None:
        """Metrics and attribution scores, each within its tolerance (of its interval with a limit)."""
        limit, remeasured = self.result.limit, _measures(self.measured) if self.measured else {}
        for name, metric in sorted(_measures(self.published).items()):
            self.result.numbers += 1
            value, ci = _value(metric), metric.ci
            new = _value(remeasured[name]) if name in remeasured else None
            new_ci = remeasured[name].ci if name in remeasured else None
            if new is not None and math.isnan(value) and math.isnan(new):
                continue
            tolerance = tolerances.of(self.published, name)
            low, high = ci if limit and ci else (value, value)
            allowed = (low - tolerance.value, high + tolerance.value)
            reach = new_ci if limit and new_ci else (new, new)
            if new is None or math.isnan(value) or math.isnan(new) or reach[1] < allowed[0] or reach[0] > allowed[1]:
                self.drift(name, metric_text(value, ci, 4), None if new is None else metric_text(new, new_ci, 4),
                           f"[{allowed[0]:.4f}, {allowed[1]:.4f}]", str(tolerance))

    def thresholds(self) -> None:
        """The decision thresholds, to ``THRESHOLD_RTOL``; informational for a record trained on another CPU."""
        published, measured = self.published, self.measured
        trained_on = published.training.trained_on.cpu if published.training.trained_on else None
        elsewhere = trained_on is not None and trained_on != hardware()["cpu"]
        for number, old, new in (
            ("threshold", published.threshold, measured.threshold if measured else None),
            ("training threshold", published.training.threshold, measured.training.threshold if measured else None),
        ):
            self.result.numbers += 1
            if new is not None and math.isclose(old, new, rel_tol=THRESHOLD_RTOL):
                continue
            allowed = f"{old:.8g} ± {THRESHOLD_RTOL * abs(old):.2g}"
            if elsewhere and new is not None:
                self.drift(number, f"{old:.8g}", f"{new:.8g}", allowed,
                           f"not comparable across hardware (trained on {trained_on})", informational=True)
            else:
                self.drift(number, f"{old:.8g}", None if new is None else f"{new:.8g}", allowed,
                           f"{THRESHOLD_RTOL:g} relative (same hardware)")

    def counts(self) -> None:
        """Source-attribution counts (test images of each source given each class), exactly."""
        if self.published.source_attribution is None:
            return
        measured = self.measured.source_attribution if self.measured else None
        remeasured = measured.predicted if measured else {}
        for source, counts in sorted(self.published.source_attribution.predicted.items()):
            for name, count in sorted(counts.items()):
                self.result.numbers += 1
                new = remeasured.get(source, {}).get(name)
                if new != count:
                    self.drift(f"source attribution {source} → {name}", str(count), None if new is None else str(new),
                               str(count), "exact count")


def verify(
    directories: list[Path],
    data_dir: Path,
    data_root: Path | None = None,
    tolerance: float | None = None,
    limit: int | None = None,
    detectors: str | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> Verification:
    """Re-measure the records in ``directories`` (optionally only ``detectors``, comma-separated wildcards);
    ``tolerance`` None takes each number's from the published seed spread (see the module docstring)."""
    result = Verification(tolerance, limit)
    groups: dict[str, dict[Path, Record]] = {}
    tolerances: dict[Path, _Tolerances] = {}
    for directory in directories:
        published = load_records(directory)
        check_records(published)  # a record its own score file contradicts is refused before anything is re-run
        folder = _Tolerances(published.values(), tolerance)
        for path, record in published.items():
            if not _matches(record, detectors):
                continue
            result.records += 1
            if record.suite_config is None:
                result.unverifiable[path] = "no suite_config: the record predates it; re-run its suite to republish"
                continue
            tolerances[path] = folder
            groups.setdefault(content_key([record.suite_config, record.detector]), {})[path] = record
    for records in groups.values():
        first = next(iter(records.values()))
        try:
            suite = _rebuilt(first, sorted({r.seed for r in records.values()}), limit)
        except (ValidationError, SuiteError) as exc:
            result.unverifiable |= {p: f"its suite_config is not a valid suite here: {exc}" for p in records}
            continue
        with tempfile.TemporaryDirectory(prefix="bench-verify-") as scratch:
            # the published run's thread count where its suite fixes none: generated sources depend on it
            threads = suite.threads or first.provenance.hardware.torch_threads
            run = Runner(data_dir, Path(scratch), data_root, device, progress, threads=threads).run(suite, render=False)
        result.runs += 1
        remeasured = {r.identity: r for r in run.records}
        for path, record in records.items():
            _Check(path, record, remeasured.get(record.identity), result).run(tolerances[path])
    return result
