"""Integrity: a record is a claim that its score file can check.

A record names its per-image scores (``scores/<key>.npy``, reals then fakes) and their sha256. Everything
computable from them is recomputed here with :mod:`bench.metrics` (the same vectorised bootstrap that scored
the cell, under the record's own bootstrap settings and threshold): every metric's value and interval, the
confusion matrix and the image counts and, beside the clean cell of the same job, the evasion rate. Render, diff and
verify call :func:`check_records` before they read a number, and refuse a record that disagrees beyond float
tolerance, naming the record file and the field; a score file whose sha256 is not the record's is refused too.
A record without a score file (before schema 2, or a folder copied without ``scores/``) cannot be checked; how
many there were is logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from bench.metrics import METRICS, evaluate, evasion_rate
from bench.records import Record, RecordError
from bench.sources import content_hash
from bench.statistics import ResampleCache, Run

log = logging.getLogger(__name__)

RTOL = 1e-9  # recomputed from the same float32 scores by the same code: only summation order may differ
ATOL = 1e-9


class IntegrityError(RecordError):
    """A record disagrees with its own score file; the message names the record file and the field."""


def _close(stored: object, recomputed: object) -> bool:
    """Whether a stored number (or list of numbers, or anything else) equals the recomputed one within float
    tolerance; NaN (or None) equals NaN (or None)."""
    if isinstance(recomputed, list | tuple) and isinstance(stored, list | tuple):
        return len(stored) == len(recomputed) and all(_close(a, b) for a, b in zip(stored, recomputed, strict=True))
    if isinstance(recomputed, float | int) and not isinstance(recomputed, bool):
        if stored is None or isinstance(stored, bool) or not isinstance(stored, float | int):
            return stored is None and math.isnan(recomputed)
        if math.isnan(recomputed) or math.isnan(stored):
            return math.isnan(recomputed) and math.isnan(stored)
        return math.isclose(stored, recomputed, rel_tol=RTOL, abs_tol=ATOL)
    return stored == recomputed


def _differences(stored: dict, recomputed: dict, prefix: str) -> Iterator[tuple[str, object, object]]:
    """(field, stored, recomputed) for every field of ``recomputed`` that ``stored`` holds otherwise. An interval
    (``ci``) is compared where both sides have one: whether a metric gets an interval at all is a rule of the code
    that scored it (e.g. none where the percentiles leave out the value), not something a record can misstate."""
    for name, value in recomputed.items():
        if isinstance(value, dict):
            yield from _differences(stored.get(name) or {}, value, f"{prefix}.{name}")
        elif name == "interval" or (name == "ci" and (value is None or stored.get(name) is None)):
            continue
        elif not _close(stored.get(name), value):
            yield f"{prefix}.{name}", stored.get(name), value


def load_scores(root: Path, record: Record) -> Run | None:
    """The record's (labels, scores, threshold) from its score file under the results folder ``root``; None when it
    has none (records before schema 2, or a folder copied without ``scores/``). A file that does not hold the
    scores the record names (sha256) is an error."""
    if record.scores is None:
        return None
    root = Path(root).resolve()
    path = (root / record.scores.file).resolve()
    if not path.is_relative_to(root):
        raise RecordError(f"record {record.key} names a score file outside its results folder: {record.scores.file}")
    if not path.is_file():
        return None
    scores = np.load(path, allow_pickle=False)
    if content_hash(scores) != record.scores.sha256 or scores.shape != (record.n_real + record.n_fake,):
        raise RecordError(f"{path} does not hold the scores of record {record.key} (sha256 differs): re-run its "
                          "suite")
    return np.r_[np.zeros(record.n_real, int), np.ones(record.n_fake, int)], scores.astype(np.float64), record.threshold


class ScoreFiles:
    """The score files of one results folder, each read and checked against its record's sha256 once
    (:func:`load_scores`), with the bootstrap resamples of each run computed once (:class:`ResampleCache`): integrity
    checks, aggregation and comparisons of one render share them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.resamples = ResampleCache()
        self._runs: dict[str, Run | None] = {}

    def run(self, record: Record) -> Run | None:
        """The record's run (:func:`load_scores`), the same object every time."""
        if record.key not in self._runs:
            self._runs[record.key] = load_scores(self.root, record)
        return self._runs[record.key]


def recomputed(record: Record, run: Run, clean: Run | None = None, samples: Mapping[str, np.ndarray] | None = None
               ) -> dict:
    """The parts of ``record`` that its scores ``run`` (labels, scores, threshold) determine, as the record holds
    them: ``metrics`` (those of :data:`bench.metrics.METRICS` it has, and ``evasion_rate`` given the ``clean`` run
    of the same job), ``confusion_matrix``, ``n_real`` and ``n_fake``; ``samples``: the run's bootstrap resamples
    under the record's settings, where already computed."""
    labels, scores, threshold = run
    boot = record.bootstrap
    result = evaluate(labels, scores, threshold, boot.resamples, boot.level, boot.seed, samples=samples)
    metrics = {name: result["metrics"][name] for name in METRICS if name in record.metrics}
    if clean is not None and "evasion_rate" in record.metrics:
        fakes = np.asarray(labels) == 1
        metrics["evasion_rate"] = evasion_rate(np.asarray(clean[1])[fakes], np.asarray(scores)[fakes], threshold,
                                               boot.level)
    return {"metrics": metrics, "confusion_matrix": result["confusion_matrix"], "n_real": result["n_real"],
            "n_fake": result["n_fake"]}


def _job_cell(record: Record) -> tuple:
    """What a record shares with the clean cell of its job: its identity minus the perturbation."""
    cell = record.identity
    return cell.detector, cell.kwargs, cell.trained_on, cell.tested_on, cell.seed


def check_records(records: Mapping[Path, Record], scores: ScoreFiles | None = None) -> int:
    """Recompute every record's numbers from its score file (records of one results folder by path,
    ``<folder>/records/<key>.json``, as :func:`bench.records.load_records` gives them; score files read through
    ``scores`` where given, so that what is read and resampled here serves the render too) and raise
    :class:`IntegrityError` naming the file and field of the first that disagrees (and how many more do); returns how
    many records were checked."""
    if not records:
        return 0
    scores = scores or ScoreFiles(Path(next(iter(records))).parent.parent)
    runs: dict[Path, Run | None] = {}
    for path, record in records.items():
        if record.scores is not None and not record.not_applicable:
            try:
                runs[path] = scores.run(record)
            except RecordError as exc:
                raise IntegrityError(f"{path}: scores.sha256: {exc}") from None
    clean = {_job_cell(records[p]): run for p, run in runs.items()
             if run is not None and records[p].perturbation.name == "clean"}
    problems = []
    for path, run in runs.items():
        if run is None:
            continue
        record = records[path]
        boot = record.bootstrap
        samples = scores.resamples.samples(run, boot.resamples, boot.seed) if boot.resamples else None
        expected = recomputed(record, run, clean.get(_job_cell(record)), samples)
        stored = record.model_dump(include=set(expected))
        problems += [(path, *difference) for difference in _differences(stored, expected, "")]
    if problems:
        path, field, stored, value = problems[0]
        more = f" ({len(problems) - 1} more numbers disagree)" if len(problems) > 1 else ""
        raise IntegrityError(f"{path}: {field.lstrip('.')} is {stored!r} but its score file gives {value!r}{more}: "
                             "the record was edited or damaged; delete it and re-run its suite")
    unchecked = sum(run is None for run in runs.values()) + sum(
        r.scores is None and not r.not_applicable for r in records.values())
    if unchecked:
        log.info("%d records have no score file: their numbers were not checked against per-image scores", unchecked)
    return sum(run is not None for run in runs.values())
