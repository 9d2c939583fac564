"""Re-measure published records and report every number that drifted (as RobustBench re-checks its zoo).

Each record carries the suite that produced it (``suite_config``). Records of one suite and detector are
re-measured together: the suite is rebuilt, restricted to that detector and the records' seeds, and run
into a temporary results folder against the same data directory, so cached checkpoints are reused (and a
missing one is retrained, which is deterministic on a CPU). Without a limit every metric must come back
within ``tolerance`` of its published value. With ``limit`` the test sources are cut to at most that many
images (a different, smaller draw, so its numbers scatter more than the published intervals say): a metric
drifted when its re-measured confidence interval does not reach the published interval widened by
``tolerance`` (where either side has no interval, its value stands in for it).
"""

from __future__ import annotations

import fnmatch
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from bench.provenance import content_key
from bench.records import IDENTITY_FIELDS, CellIdentity, identity, load_records, metric_text
from bench.runner import Runner
from bench.suite import Suite, SuiteError


@dataclass(frozen=True)
class Drift:
    """A published number that the re-measurement did not reproduce (``measured`` None: cell not re-measured)."""

    record: Path
    cell: CellIdentity
    metric: str
    published: float
    published_ci: tuple[float, float] | None
    measured: float | None
    measured_ci: tuple[float, float] | None
    allowed: tuple[float, float]


@dataclass
class Verification:
    """What ``verify`` re-measured and what it found."""

    tolerance: float
    limit: int | None
    records: int = 0
    numbers: int = 0
    runs: int = 0
    drifts: list[Drift] = field(default_factory=list)
    unverifiable: dict[Path, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.drifts and not self.unverifiable

    def summary(self) -> str:
        rule = (f"published intervals widened by {self.tolerance:g} (re-measured intervals on at most {self.limit} "
                "test images per source must reach them)" if self.limit else f"published values ± {self.tolerance:g}")
        return (f"Re-measured {self.records} records ({self.numbers} numbers) in {self.runs} run"
                f"{'s' if self.runs != 1 else ''} against the "
                f"{rule}: {len(self.drifts)} drifted, {len(self.unverifiable)} could not be re-measured.")

    def markdown(self) -> str:
        """The report: a summary line, every drifted number, and the records that could not be re-measured."""
        lines = ["# Verification of published records", "", self.summary(), ""]
        if self.drifts:
            rows = [
                dict(zip([f.capitalize() for f in IDENTITY_FIELDS], d.cell, strict=True)) | {
                    "Metric": d.metric,
                    "Published": metric_text(d.published, d.published_ci, 4),
                    "Re-measured": ("not re-measured" if d.measured is None
                                    else metric_text(d.measured, d.measured_ci, 4)),
                    "Allowed": f"[{d.allowed[0]:.4f}, {d.allowed[1]:.4f}]",
                    "Record": str(d.record),
                }
                for d in self.drifts
            ]
            lines += ["## Drifted numbers", "", pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
        if self.unverifiable:
            lines += ["## Not re-measured", "", *(f"- `{p}`: {why}" for p, why in self.unverifiable.items()), ""]
        return "\n".join(lines)


def _interval(metric: dict) -> tuple[float, float] | None:
    return tuple(metric["ci"]) if metric.get("ci") else None


def _matches(record: dict, pattern: str | None) -> bool:
    return pattern is None or any(fnmatch.fnmatchcase(record["detector"], p) for p in pattern.split(","))




def _rebuilt(record: dict, seeds: list[int], limit: int | None) -> Suite:
    """The record's suite, restricted to its detector and ``seeds``, with at most ``limit`` test images."""
    suite = Suite.model_validate(record["suite_config"])
    current = suite.test.limit
    test_limit = limit if limit is not None and (current is None or limit < current) else None
    return suite.with_overrides(detectors=record["detector"], seeds=seeds, test_limit=test_limit)


def _compare(path: Path, published: dict, measured: dict | None, result: Verification) -> None:
    for name, metric in sorted(published["metrics"].items()):
        result.numbers += 1
        value, ci = metric["value"], _interval(metric)
        remeasured = measured["metrics"].get(name) if measured else None
        new = remeasured["value"] if remeasured else None
        new_ci = _interval(remeasured) if remeasured else None
        if new is not None and math.isnan(value) and math.isnan(new):
            continue
        low, high = ci if result.limit and ci else (value, value)
        allowed = (low - result.tolerance, high + result.tolerance)
        reach = new_ci if result.limit and new_ci else (new, new)
        if new is None or math.isnan(new) or reach[1] < allowed[0] or reach[0] > allowed[1]:
            result.drifts.append(Drift(path, identity(published), name, value, ci, new, new_ci, allowed))


def verify(
    directories: list[Path],
    data_dir: Path,
    data_root: Path | None = None,
    tolerance: float = 0.01,
    limit: int | None = None,
    detectors: str | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> Verification:
    """Re-measure the records in ``directories`` (optionally only ``detectors``, comma-separated wildcards)."""
    result = Verification(tolerance, limit)
    groups: dict[str, dict[Path, dict]] = {}
    for directory in directories:
        for path, record in load_records(directory).items():
            if not _matches(record, detectors):
                continue
            result.records += 1
            if "suite_config" not in record:
                result.unverifiable[path] = "no suite_config: the record predates it; re-run its suite to republish"
                continue
            groups.setdefault(content_key([record["suite_config"], record["detector"]]), {})[path] = record
    for records in groups.values():
        first = next(iter(records.values()))
        try:
            suite = _rebuilt(first, sorted({r["seed"] for r in records.values()}), limit)
        except (ValidationError, SuiteError) as exc:
            result.unverifiable |= {p: f"its suite_config is not a valid suite here: {exc}" for p in records}
            continue
        with tempfile.TemporaryDirectory(prefix="bench-verify-") as scratch:
            run = Runner(data_dir, Path(scratch), data_root, device, progress).run(suite)
        result.runs += 1
        remeasured = {identity(r): r for r in run.records}
        for path, record in records.items():
            _compare(path, record, remeasured.get(identity(record)), result)
    return result
