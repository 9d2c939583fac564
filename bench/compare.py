"""Numbers over records: cells aggregated over training seeds, and detectors compared on the same test images.

A record's per-image scores (``scores/<key>.npy``, reals then fakes) make a *run* of :mod:`bench.statistics`.
:func:`aggregate` groups records by cell (their identity minus the seed) and gives each metric's mean over
seeds, its spread across seeds and an interval: with several seeds a t interval whose variance adds the
bootstrap variance over test images of the seed mean and the variance across seeds over their number; with one
seed the bootstrap over test images. :func:`compare_detectors` gives paired differences between the detectors of
each (training set, test source, perturbation), with p-values adjusted by Holm's method across the pairs and
headline metrics of that table and a verdict from the adjusted values. Records without score files (schema 1)
fall back to the intervals stored in them, and every aggregate says what its interval covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bench.integrity import ScoreFiles
from bench.metrics import CHUNK_ELEMENTS, METRICS, REGISTRY, Confusion, Metric, headline_metrics, wilson_interval
from bench.records import Bootstrap, Record, RecordError, unique_cells
from bench.statistics import (
    ResampleCache,
    Run,
    delong_test,
    holm,
    paired_bootstrap,
    seed_bootstrap,
    seed_mean_interval,
)


class Cell(NamedTuple):
    """A cell measured over training seeds: a record's identity minus its seed."""

    detector: str
    kwargs: str
    trained_on: str
    tested_on: str
    perturbation: str

    @property
    def name(self) -> str:
        """The detector as tables show it: its name, with its constructor arguments when it has any."""
        return self.detector if self.kwargs == "{}" else f"{self.detector} {self.kwargs}"

    @classmethod
    def of(cls, record: Record) -> Cell:
        return cls(*record.identity[:5])


@dataclass(frozen=True)
class Aggregate:
    """One cell over its training seeds.

    ``metrics`` maps each metric (and ``evasion_rate`` where measured) to ``mean``, ``std`` (ddof=1; NaN with one
    seed), ``per_seed``, ``ci`` (None where there is none) and ``interval`` (how ``ci`` was made: "t",
    "bootstrap-percentile", "wilson", "stored" or None); from score files also ``image_variance`` (bootstrap
    variance over test images of the seed mean) and ``se`` (see :func:`bench.statistics.seed_mean_interval`).
    ``runs`` are the seeds' score files (None when a record has none, or when the seeds were scored on different
    images); ``covers`` says what the intervals cover, e.g. "mean over 3 training seeds [95% t interval: ...]".
    """

    cell: Cell
    records: tuple[Record, ...]  # by seed
    runs: tuple[Run, ...] | None
    metrics: dict[str, dict]
    covers: str

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    @property
    def bootstrap(self) -> Bootstrap:
        """The suite's bootstrap settings (resamples, level, seed), read from the first record."""
        return self.records[0].bootstrap


def _unique(records: Sequence[Record]) -> None:
    """An error for two records of one cell identity (or one record given twice)."""
    paths = [Path("records") / f"{r.key}.json" for r in records]
    if len(set(paths)) < len(paths):
        raise RecordError(f"a record is given twice: {sorted(p for p in paths if paths.count(p) > 1)[0]}")
    unique_cells(dict(zip(paths, records, strict=True)))


def stored_metric(record: Record, name: str) -> tuple[float, list[float] | None]:
    """A metric's value and interval as stored in the record (derived from the others, without an interval, for
    records that predate it: :meth:`bench.metrics.Metric.derived`); NaN when the record lacks the metric."""
    metrics = record.metrics
    if name in metrics:
        value, ci = metrics[name].value, metrics[name].ci
        return (float("nan") if value is None else float(value)), (None if ci is None else list(ci))
    derived = REGISTRY[name].derived({key: m.value for key, m in metrics.items()}) if name in REGISTRY else None
    return (float("nan") if derived is None else derived), None


def _confusion(record: Record, run: Run | None) -> tuple[int, int, int, int]:
    """(tn, fp, fn, tp) of one seed: from its scores when there are some, else as stored."""
    if run is None:
        (tn, fp), (fn, tp) = record.confusion_matrix
        return tn, fp, fn, tp
    labels, scores, threshold = run
    fake, called = np.asarray(labels) == 1, np.asarray(scores) >= threshold
    return int((~fake & ~called).sum()), int((~fake & called).sum()), int((fake & ~called).sum()), \
        int((fake & called).sum())


def _without_zero_width(name: str, metric: dict, counts: list[tuple[int, int, int, int]], level: float) -> dict:
    """``metric`` with a zero-width interval (every resample alike, as at 0 or 1) replaced by the metric's
    :meth:`bench.metrics.Metric.zero_width_interval` of the mean counts over seeds (Wilson's for a proportion)."""
    ci = metric["ci"]
    if ci is None or ci[0] != ci[1]:
        return metric
    ci = METRICS[name].zero_width_interval(Confusion(*np.mean(counts, axis=0)), level)
    return metric | {"ci": ci, "interval": "wilson" if ci else None}


def _spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN with one value) of per-seed values."""
    array = np.asarray(values, float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else float("nan")


def _from_records(records: Sequence[Record], names: Iterable[str]) -> dict[str, dict]:
    """Each metric's mean and spread over seeds from the stored values; the stored interval with one seed."""
    metrics = {}
    for name in names:
        stored = [stored_metric(r, name) for r in records]
        mean, std = _spread([value for value, _ in stored])
        ci = stored[0][1] if len(records) == 1 else None
        metrics[name] = {"mean": mean, "std": std, "per_seed": [value for value, _ in stored], "ci": ci,
                         "interval": ("stored" if ci else None)}
    return metrics


def _evasion_interval(clean: Sequence[Run], perturbed: Sequence[Run], n_boot: int, level: float,
                      seed: int) -> list[float] | None:
    """The t interval of the mean evasion rate over seeds (:func:`bench.statistics.seed_mean_interval`): its
    variance adds the bootstrap variance of the seed mean over draws of the fake test images (every seed on the
    same draw) and the variance across seeds over their number; Wilson's interval on the counts pooled over seeds
    where every seed and resample is 0 (or 1); None if some seed detected no fake."""
    def fakes(run: Run) -> np.ndarray:
        return np.asarray(run[1], dtype=np.float64)[np.asarray(run[0]) == 1]

    detected = np.stack([fakes(run) >= run[2] for run in clean])  # (seeds, fakes)
    evaded = detected & np.stack([fakes(run) < run[2] for run in perturbed])
    if not detected.any(1).all():
        return None
    per_seed = evaded.sum(1) / detected.sum(1)
    n_seeds, n_fake = detected.shape
    rng = np.random.default_rng(seed)
    size, means = max(1, CHUNK_ELEMENTS // (n_fake * n_seeds)), []
    for start in range(0, n_boot, size):
        images = rng.integers(0, n_fake, (min(size, n_boot - start), n_fake))
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append((evaded[:, images].sum(-1) / detected[:, images].sum(-1)).mean(0))  # (rows,)
    values = np.concatenate(means)
    values = values[np.isfinite(values)]
    if per_seed.min() == per_seed.max() and per_seed[0] in (0.0, 1.0) and values.min() == values.max():
        return list(wilson_interval(int(evaded.sum()), int(detected.sum()), level))  # no spread at 0 or 1
    image_variance = float(values.var(ddof=1)) if len(values) > 1 else 0.0
    return seed_mean_interval(per_seed, image_variance, level, max(len(values) - 1.0, 1.0))["ci"]


def _describe(n_seeds: int, level: float, method: str) -> str:
    """What a cell's intervals cover, for table notes."""
    over = f"mean over {n_seeds} training seeds" if n_seeds > 1 else "one training seed"
    percent = f"{level * 100:g}%"
    return over + " [" + {
        "seeds": f"{percent} t interval over training seeds and test images: variance across seeds / {n_seeds} "
                 f"({n_seeds - 1} degrees of freedom) + bootstrap variance over the test images the seeds share",
        "images": f"{percent} bootstrap: test images only",
        "stored": f"{percent} interval stored in the record: test images only; no score file",
        "no scores": "no interval: records without score files (each seed's interval: leaderboard-seeds.csv)",
        "mixed images": "no interval: the seeds were scored on different test images",
        "no bootstrap": "no interval: the suite drew no bootstrap resamples",
    }[method] + "]"


def _aggregate(cell: Cell, records: list[Record], scores: ScoreFiles) -> Aggregate:
    """One cell's aggregate (evasion rate from the stored values; see :func:`aggregate`)."""
    if any(r.not_applicable for r in records):  # e.g. an attack on a detector without gradients
        missing = {"mean": float("nan"), "std": float("nan"), "per_seed": [float("nan")] * len(records), "ci": None,
                   "interval": None}
        return Aggregate(cell, tuple(records), None, dict.fromkeys(METRICS, missing),
                         f"not applicable: {records[0].not_applicable}")
    runs = [scores.run(r) for r in records]
    same = len({r.scored_images for r in records}) == 1
    usable = None if any(run is None for run in runs) or not same else tuple(runs)
    boot = records[0].bootstrap
    n_boot, level = boot.resamples, boot.level
    if usable and n_boot > 1:
        metrics = seed_bootstrap(usable, n_boot, level, boot.seed, scores.resamples)["metrics"]
        method = "seeds" if len(records) > 1 else "images"
    else:
        metrics = _from_records(records, METRICS)
        method = ("no bootstrap" if n_boot < 2 else "stored" if len(records) == 1
                  else "no scores" if same else "mixed images")
    counts = [_confusion(r, run) for r, run in zip(records, runs, strict=True)]
    metrics = {name: _without_zero_width(name, metric, counts, level) for name, metric in metrics.items()}
    if any("evasion_rate" in r.metrics for r in records):
        metrics |= _from_records(records, ["evasion_rate"])
    return Aggregate(cell, tuple(records), usable, metrics, _describe(len(records), level, method))


def aggregate(records: Sequence[Record], root: Path, scores: ScoreFiles | None = None) -> list[Aggregate]:
    """The records grouped by cell (identity minus seed) and aggregated over seeds, in order of first appearance.

    Score files are read from the results folder ``root`` (through ``scores`` where given, to share what was read
    and resampled). Two records for one cell identity are an error. An
    evasion rate over several seeds gets a t interval from the perturbed cell's and the clean cell's score files.
    """
    _unique(records)
    groups: dict[Cell, list[Record]] = {}
    for record in records:
        groups.setdefault(Cell.of(record), []).append(record)
    scores = scores or ScoreFiles(root)
    cells = {cell: _aggregate(cell, sorted(group, key=lambda r: r.seed), scores) for cell, group in groups.items()}
    for cell, one in cells.items():
        clean, boot = cells.get(cell._replace(perturbation="clean")), one.bootstrap
        if ("evasion_rate" in one.metrics and len(one.records) > 1 and one.runs and clean and clean.runs
                and clean.seeds == one.seeds and boot.resamples > 1):
            ci = _evasion_interval(clean.runs, one.runs, boot.resamples, boot.level, boot.seed)
            evasion = one.metrics["evasion_rate"] | {"ci": ci, "interval": "t" if ci else None}
            cells[cell] = replace(one, metrics=one.metrics | {"evasion_rate": evasion})
    return list(cells.values())


DELONG = "roc_auc"  # the metric DeLong's test is for, added where each side has one seed


@dataclass(frozen=True)
class Comparison:
    """Detector ``a`` against detector ``b`` on one (training set, test source, perturbation).

    ``metrics`` maps each compared (headline) metric to ``a``, ``b`` (means over seeds), ``difference`` (a - b),
    ``se``, ``ci`` and ``p_value`` of the paired test (:func:`bench.statistics.paired_bootstrap`), ``p_holm`` (Holm's
    adjustment across the pairs and metrics of its table; until then the unadjusted value), ``significant``
    (``p_holm`` below 1 - level) and for AUC (:data:`DELONG`) ``delong_p`` where each side has one seed (NaN where
    DeLong's test does not apply); empty when the two were not compared (``test`` says why). ``verdict`` comes from
    the adjusted p-values (:func:`verdict_text`).
    """

    a: Aggregate
    b: Aggregate
    metrics: dict[str, dict]
    test: str
    verdict: str = "–"


def _both_below_chance(declared: Metric, compared: dict) -> bool:
    """Both means lie below the metric's chance level (on the wrong side of it, for a lower-is-better metric)."""
    if declared.chance is None:
        return False
    sign = 1 if declared.higher_is_better else -1
    return sign * (compared["a"] - declared.chance) < 0 and sign * (compared["b"] - declared.chance) < 0


def verdict_text(a: str, b: str, metrics: dict[str, dict]) -> str:
    """Which of ``a`` and ``b`` the compared metrics favour, naming every metric that disagrees.

    ``metrics`` maps metric names (:data:`bench.metrics.REGISTRY`) to ``difference`` (a - b), ``significant`` and
    the means ``a`` and ``b``. No detector is called better where both means of a metric lie below its chance level
    (both below chance on that source; the first such metric is named), nor where one significant metric favours a
    and another b.
    """
    below = next((REGISTRY[name] for name, m in metrics.items() if _both_below_chance(REGISTRY[name], m)), None)
    if below is not None:
        return f"both below chance (mean {below.label} below {below.chance:g}): no verdict"
    favours = {}
    for name, m in metrics.items():
        declared = REGISTRY[name]
        favours[declared.label] = ((a if (m["difference"] > 0) == declared.higher_is_better else b)
                                   if m["significant"] else None)
    sides = set(favours.values()) - {None}
    if len(sides) > 1:
        return ", ".join(f"{label} favours {side}" for label, side in favours.items() if side) + ": no verdict"
    if not sides:
        return "not told apart"
    better = " and ".join(label for label, side in favours.items() if side)
    undecided = " and ".join(label for label, side in favours.items() if not side)
    return f"{sides.pop()} better" + (f" on {better}; {undecided} not told apart" if undecided else "")


def compare_pair(a: Aggregate, b: Aggregate, headline: Iterable[str] = tuple(headline_metrics()),
                 cache: ResampleCache | None = None) -> Comparison:
    """The paired test of a - b on the ``headline`` metrics (and DeLong's for AUC with one seed each), when both have
    score files on the same images; p-values unadjusted and the verdict from them (:func:`compare_detectors` adjusts
    a table's pairs). ``cache``: the runs' resamples, where already drawn."""
    if not (a.runs and b.runs):
        return Comparison(a, b, {}, "not compared: records without score files")
    if a.records[0].scored_images != b.records[0].scored_images:
        return Comparison(a, b, {}, "not compared: scored on different test images")
    boot = a.bootstrap
    if boot.resamples < 2:
        return Comparison(a, b, {}, "not compared: the suite drew no bootstrap resamples")
    level = boot.level
    paired = a.seeds == b.seeds
    result = paired_bootstrap(a.runs, b.runs, boot.resamples, level, boot.seed, paired=paired,
                              cache=cache)
    metrics = {name: {"a": a.metrics[name]["mean"], "b": b.metrics[name]["mean"]} | result["metrics"][name]
               for name in headline}
    if len(a.runs) == len(b.runs) == 1:
        test = "t test over test images only (paired bootstrap variance); training seeds not covered"
        if DELONG in metrics:
            (labels, scores_a, _), (_, scores_b, _) = a.runs[0], b.runs[0]
            metrics[DELONG]["delong_p"] = delong_test(labels, scores_a, scores_b, level)["p_value"]
            test += "; DeLong for AUC"
    else:
        seeds = "paired by seed" if paired else "seeds unpaired"
        test = f"t test over training seeds ({seeds}) and test images (paired bootstrap)"
    return _adjusted(Comparison(a, b, metrics, test), {name: m["p_value"] for name, m in metrics.items()})


def _adjusted(comparison: Comparison, adjusted: dict[str, float]) -> Comparison:
    """``comparison`` with the adjusted p-value ``adjusted[name]`` of each metric, and the verdict from them."""
    alpha = 1 - comparison.a.bootstrap.level
    metrics = {name: m | {"p_holm": adjusted[name], "significant": bool(adjusted[name] < alpha)}
               for name, m in comparison.metrics.items()}
    return replace(comparison, metrics=metrics,
                   verdict=verdict_text(comparison.a.cell.name, comparison.b.cell.name, metrics))


def compare_detectors(aggregates: Sequence[Aggregate], headline: Sequence[str] | None = None,
                      cache: ResampleCache | None = None) -> list[Comparison]:
    """Every pair of detectors measured on the same (training set, test source, perturbation) compared on the
    ``headline`` metrics (:func:`bench.metrics.headline_metrics`), the one better on the first of them as ``a``; the
    p-values of every compared pair and metric of one (training set, test source, perturbation) adjusted together by
    Holm's method, and verdicts from the adjusted values. ``cache``: the runs' resamples, shared with aggregation."""
    compared_on = headline_metrics(headline)
    first = next(iter(compared_on.values()))
    sign = -1 if first.higher_is_better else 1
    buckets: dict[tuple[str, str, str], list[Aggregate]] = {}
    for one in aggregates:
        buckets.setdefault((one.cell.trained_on, one.cell.tested_on, one.cell.perturbation), []).append(one)
    comparisons = []
    for group in buckets.values():
        ranked = sorted(group, key=lambda one: (sign * np.nan_to_num(one.metrics[first.name]["mean"], nan=2 * sign),
                                                one.cell.name))
        pairs = [compare_pair(a, b, compared_on, cache) for a, b in combinations(ranked, 2)]
        compared = [c for c in pairs if c.metrics]
        adjusted = iter(holm([c.metrics[name]["p_value"] for c in compared for name in compared_on]))
        corrected = iter([_adjusted(c, {name: float(next(adjusted)) for name in compared_on}) for c in compared])
        comparisons += [next(corrected) if c.metrics else c for c in pairs]
    return comparisons
