"""Detection metrics, one declaration each, with stratified bootstrap confidence intervals ("fake" is the positive
class).

Every metric is a class registered with :func:`register` (:data:`REGISTRY`): its name (the key in records), its label
in tables, whether higher is better, its chance level and whether tables flag it below chance, where reports show it,
and how it is computed: a :class:`ThresholdMetric` from the confusion counts at the decision threshold (a
:class:`Proportion` is a binomial proportion, successes over trials), a :class:`RankingMetric` from how many reals and
fakes lie at each distinct score. :data:`METRICS` holds those computed from one run's scores. Adding a metric is one
declaration here and its test.

The bootstrap resamples reals and fakes separately (so both classes are present in every resample) and reduces each
resample to how many reals and fakes it drew at each distinct score. Every metric then comes from those counts, for a
chunk of resamples at once: the threshold metrics from the confusion counts, ROC AUC from ranks (Mann-Whitney, ties as
midranks) and average precision as scikit-learn defines it (ties included), so each resample's value equals
scikit-learn's on that resample; a point value is the same computation on the test images themselves. Intervals are
percentiles of the resampled values; a proportion whose resamples are all equal (as at 0 or 1) gets Wilson's score
interval instead, and a metric whose percentiles leave out its own value gets none. Scores are compared with
thresholds as float64 everywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Literal, NamedTuple

import numpy as np

View = Literal["matrix", "robustness", "curves"]  # report views beyond the cell tables (see Metric.views)

# Draws (resamples x images) held in memory at once while bootstrapping.
CHUNK_ELEMENTS = 1 << 21


class Confusion(NamedTuple):
    """Confusion counts at the decision threshold: numbers, or arrays over resamples."""

    tn: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tp: np.ndarray


def ratio(num: np.ndarray, den: np.ndarray, undefined: float = 0.0) -> np.ndarray:
    """``num / den`` elementwise, ``undefined`` where ``den`` is 0."""
    return np.divide(num, den, out=np.full(np.shape(num), undefined, float), where=np.asarray(den) > 0)


@dataclass(frozen=True)
class ScoreCounts:
    """Rows of (B, U) counts of reals and fakes at the distinct scores ``values`` (ascending), and the threshold."""

    values: np.ndarray
    reals: np.ndarray
    fakes: np.ndarray
    threshold: float

    @cached_property
    def n_real(self) -> np.ndarray:
        return self.reals.sum(1)

    @cached_property
    def n_fake(self) -> np.ndarray:
        return self.fakes.sum(1)

    @cached_property
    def reals_below(self) -> np.ndarray:
        """Per row and distinct score, the reals scored strictly below it."""
        return np.cumsum(self.reals, 1) - self.reals

    @cached_property
    def fakes_below(self) -> np.ndarray:
        """Per row and distinct score, the fakes scored strictly below it."""
        return np.cumsum(self.fakes, 1) - self.fakes

    @cached_property
    def confusion(self) -> Confusion:
        """The confusion counts of each row, predicting fake at scores >= the threshold."""
        first = int(np.searchsorted(self.values, self.threshold, side="left"))
        tp, fp = self.fakes[:, first:].sum(1), self.reals[:, first:].sum(1)
        return Confusion(self.n_real - fp, fp, self.n_fake - tp, tp)


class Metric(ABC):
    """One metric's declaration. Subclass :class:`ThresholdMetric`, :class:`Proportion` or :class:`RankingMetric`
    (or this, for a metric not computed from one run's scores) and decorate with :func:`register`."""

    name: ClassVar[str]  # the key in records and the column stem in tables (``auc``, ``auc_ci_low``, ...)
    label: ClassVar[str]  # short, for table headings
    higher_is_better: ClassVar[bool] = True
    chance: ClassVar[float | None] = None  # the value of a detector that guesses; None: none fixed
    chance_key: ClassVar[str | None] = None  # the frame column of a chance level that depends on the test images
    flags_below_chance: ClassVar[bool] = False  # tables flag a value whose whole interval lies below chance
    column: ClassVar[int | None] = None  # position among the metric columns of the cell tables; None: CSV/JSON only
    where_measured: ClassVar[bool] = False  # a cell-table column only where some cell has a value
    views: ClassVar[frozenset[View]] = frozenset()  # cross-source matrix, robustness tables, robustness curves
    per_run: ClassVar[bool] = False  # computed from one run's (labels, scores, threshold): in METRICS

    def chance_level(self, n_real: int, n_fake: int) -> float | None:
        """The chance level on a test set of ``n_real`` reals and ``n_fake`` fakes (None where there is none)."""
        return self.chance

    def below_chance(self, value: float, high: float | None) -> bool:
        """The below-chance rule: the whole interval (the value, without one) lies below the chance level."""
        return self.chance is not None and bool((value if high is None else high) < self.chance)

    def proportion(self, counts: Confusion) -> tuple[float, float] | None:
        """(successes, trials) of a binomial proportion; None for other metrics."""
        return None

    def derived(self, stored: Mapping[str, float | None]) -> float | None:
        """The value derived from a record's other stored metrics (``stored``: name -> value), for records that
        predate this metric; None where it cannot be."""
        return None

    def zero_width_interval(self, counts: Confusion, level: float) -> list[float] | None:
        """The interval of a value whose resamples all agree (as at 0 or 1), from (mean) counts: Wilson's score
        interval for a proportion, else none."""
        proportion = self.proportion(counts)
        if proportion is None or not round(proportion[1]):
            return None
        return list(wilson_interval(round(proportion[0]), round(proportion[1]), level))


class ScoreMetric(Metric):
    """A metric computed from one run's scores at its threshold, for each row of resampled counts."""

    per_run = True
    undefined: ClassVar[float] = float("nan")  # the value where it is undefined (e.g. a class without images)

    @abstractmethod
    def compute(self, counts: ScoreCounts) -> np.ndarray:
        """The metric of each row of ``counts``."""


class ThresholdMetric(ScoreMetric):
    """A metric of the confusion counts at the decision threshold."""

    def compute(self, counts: ScoreCounts) -> np.ndarray:
        return self.from_confusion(counts.confusion)

    @abstractmethod
    def from_confusion(self, counts: Confusion) -> np.ndarray:
        """The metric of confusion counts (arrays over resamples)."""


class Proportion(ThresholdMetric):
    """A binomial proportion of the confusion counts: successes over trials."""

    @abstractmethod
    def proportion(self, counts: Confusion) -> tuple[np.ndarray, np.ndarray]: ...

    def from_confusion(self, counts: Confusion) -> np.ndarray:
        return ratio(*self.proportion(counts), self.undefined)


class RankingMetric(ScoreMetric):
    """A metric of the scores' ranking (no threshold); undefined without both classes."""


REGISTRY: dict[str, Metric] = {}  # every declared metric, in declaration order
METRICS: dict[str, ScoreMetric] = {}  # those computed from one run's scores (every record holds them)


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: declare a metric (an error if its name is taken)."""
    if cls.name in REGISTRY:
        raise ValueError(f"metric {cls.name!r} is declared twice: rename one")
    metric = REGISTRY[cls.name] = cls()
    if metric.per_run:
        METRICS[cls.name] = metric
    return cls


def unregister(name: str) -> None:
    """Remove a declared metric (for tests that declare one)."""
    REGISTRY.pop(name)
    METRICS.pop(name, None)


def metric_named(name: str) -> Metric:
    """The declared metric ``name``; a one-line error naming the known ones otherwise."""
    if name not in REGISTRY:
        raise KeyError(f"unknown metric {name!r}: choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


DEFAULT_HEADLINE = ("roc_auc", "balanced_accuracy")  # what comparisons test and headlines quote, unless a suite says


def headline_metrics(names: Sequence[str] | None = None) -> dict[str, Metric]:
    """The headline metrics (a suite's ``headline_metrics``, else :data:`DEFAULT_HEADLINE`) by name, in order."""
    return {name: metric_named(name) for name in (names or DEFAULT_HEADLINE)}


@register
class Accuracy(Proportion):
    """Share of test images classified correctly."""

    name, label, column, views = "accuracy", "Acc", 1, frozenset({"robustness", "curves"})

    def proportion(self, c: Confusion) -> tuple[np.ndarray, np.ndarray]:
        return c.tp + c.tn, c.tp + c.tn + c.fp + c.fn


@register
class Precision(Proportion):
    """Share of the images called fake that are fake (0 when none is called fake, as scikit-learn's)."""

    name, label, undefined = "precision", "Precision", 0.0

    def proportion(self, c: Confusion) -> tuple[np.ndarray, np.ndarray]:
        return c.tp, c.tp + c.fp


@register
class Recall(Proportion):
    """Share of the fakes called fake (0 without fakes, as scikit-learn's)."""

    name, label, undefined = "recall", "Recall", 0.0

    def proportion(self, c: Confusion) -> tuple[np.ndarray, np.ndarray]:
        return c.tp, c.tp + c.fn


@register
class F1(ThresholdMetric):
    """Harmonic mean of precision and recall (0 where undefined, as scikit-learn's)."""

    name, label, column, undefined = "f1", "F1", 3, 0.0

    def from_confusion(self, c: Confusion) -> np.ndarray:
        return ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, self.undefined)


@register
class RocAuc(RankingMetric):
    """Area under the ROC curve: the Mann-Whitney statistic, ties counted as half."""

    name, label, chance, flags_below_chance, column = "roc_auc", "AUC", 0.5, True, 4
    views = frozenset({"matrix", "robustness", "curves"})

    def compute(self, counts: ScoreCounts) -> np.ndarray:
        pairs = (counts.fakes * (2 * counts.reals_below + counts.reals)).sum(1)
        return ratio(pairs, 2.0 * counts.n_real * counts.n_fake, self.undefined)


@register
class AveragePrecision(RankingMetric):
    """Average precision as scikit-learn computes it: sum_u (R_u - R_(u-1)) P_u over the distinct scores u from the
    top; its chance level is the share of fakes among the test images."""

    name, label, chance_key, column = "average_precision", "AP", "ap_chance", 5

    def chance_level(self, n_real: int, n_fake: int) -> float:
        return n_fake / (n_real + n_fake)

    def compute(self, counts: ScoreCounts) -> np.ndarray:
        total = (counts.n_real + counts.n_fake)[:, None]
        at_or_above = np.maximum(total - counts.reals_below - counts.fakes_below, 1)
        precisions = (counts.fakes * ((counts.n_fake[:, None] - counts.fakes_below) / at_or_above)).sum(1)
        return ratio(precisions, counts.n_fake * (counts.n_real > 0), self.undefined)


@register
class AccuracyReal(Proportion):
    """Share of the reals called real (specificity)."""

    name, label, column = "accuracy_real", "Acc real", 6

    def proportion(self, c: Confusion) -> tuple[np.ndarray, np.ndarray]:
        return c.tn, c.tn + c.fp


@register
class AccuracyFake(Proportion):
    """Share of the fakes called fake (recall; undefined without fakes)."""

    name, label, column, views = "accuracy_fake", "Acc fake", 7, frozenset({"matrix"})

    def proportion(self, c: Confusion) -> tuple[np.ndarray, np.ndarray]:
        return c.tp, c.tp + c.fn


@register
class BalancedAccuracy(ThresholdMetric):
    """Mean of the accuracy on reals and on fakes: unlike accuracy, it does not reward calling everything the
    larger class."""

    name, label, chance, column, views = "balanced_accuracy", "Bal acc", 0.5, 2, frozenset({"robustness"})

    def from_confusion(self, c: Confusion) -> np.ndarray:
        return (AccuracyReal().from_confusion(c) + AccuracyFake().from_confusion(c)) / 2

    def derived(self, stored: Mapping[str, float | None]) -> float | None:
        """The mean of the stored accuracies on reals and on fakes."""
        if stored.get("accuracy_real") is None or stored.get("accuracy_fake") is None:
            return None
        return (stored["accuracy_real"] + stored["accuracy_fake"]) / 2

    def zero_width_interval(self, counts: Confusion, level: float) -> list[float] | None:
        """The mean of the two classes' Wilson intervals."""
        real, fake = (side().zero_width_interval(counts, level) for side in (AccuracyReal, AccuracyFake))
        return [(real[0] + fake[0]) / 2, (real[1] + fake[1]) / 2] if real and fake else None


@register
class EvasionRate(Metric):
    """Share of the fakes detected on clean input that a perturbation turns into "real" (:func:`evasion_rate`)."""

    name, label, higher_is_better, column, where_measured = "evasion_rate", "Evasion", False, 8, True
    views = frozenset({"robustness"})


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises balanced accuracy on (validation) data; predict fake at >=."""
    from sklearn.metrics import roc_curve  # here: `bench list` loads no scipy/sklearn
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], np.max(scores)))


@dataclass(frozen=True)
class Ranking:
    """Scores sorted once: their distinct values (ascending) and, per class, each image's index into them."""

    values: np.ndarray
    real: np.ndarray
    fake: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, scores: np.ndarray) -> Ranking:
        labels = np.asarray(labels).astype(int)
        values, group = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
        return cls(values, group[labels == 0], group[labels == 1])

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """The reals and the fakes at each distinct score, as one-row (1, U) arrays."""
        return tuple(np.bincount(group, minlength=len(self.values))[None] for group in (self.real, self.fake))


def point_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric in METRICS at ``threshold`` on the images themselves (equal to scikit-learn's values; NaN where
    a metric needs a class that is missing, 0 where scikit-learn's ``zero_division`` gives 0)."""
    ranking = Ranking.of(labels, scores)
    return {name: float(value[0]) for name, value in
            metrics_from_counts(ranking.values, *ranking.counts(), threshold).items()}


def stratified_draws(
    n_real: int, n_fake: int, n_boot: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``n_boot`` class-stratified bootstrap draws in chunks: (B, n_real) and (B, n_fake) positions drawn
    with replacement within the reals and within the fakes (in the order of the labels). Each resample is
    one row of the random stream, so the draws do not depend on the chunk size."""
    size = max(1, CHUNK_ELEMENTS // (n_real + n_fake))
    bounds = np.repeat([n_real, n_fake], [n_real, n_fake])
    for start in range(0, n_boot, size):
        draw = rng.integers(0, bounds, (min(size, n_boot - start), len(bounds)))
        yield draw[:, :n_real], draw[:, n_real:]


def resampled_counts(ranking: Ranking, real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many reals and fakes each draw (rows of positions, see :func:`stratified_draws`) holds at each
    distinct score: two (B, U) integer arrays."""
    rows, width = len(real), len(ranking.values)

    def count(group: np.ndarray, positions: np.ndarray) -> np.ndarray:
        keys = group[positions] + np.arange(rows)[:, None] * width
        return np.bincount(keys.ravel(), minlength=rows * width).reshape(rows, width)

    return count(ranking.real, real), count(ranking.fake, fake)


def metrics_from_counts(
    values: np.ndarray, reals: np.ndarray, fakes: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    """Every metric in METRICS for each row of (B, U) real and fake counts at the distinct scores ``values``."""
    counts = ScoreCounts(values, reals, fakes, float(threshold))
    return {name: declared.compute(counts) for name, declared in METRICS.items()}


def count_metrics(tp: np.ndarray, fn: np.ndarray, tn: np.ndarray, fp: np.ndarray) -> dict[str, np.ndarray]:
    """Every threshold metric of METRICS from confusion counts (arrays over resamples)."""
    counts = Confusion(*(np.asarray(c) for c in (tn, fp, fn, tp)))
    return {name: declared.from_confusion(counts) for name, declared in METRICS.items()
            if isinstance(declared, ThresholdMetric)}


def bootstrap_samples(
    labels: np.ndarray, scores: np.ndarray, threshold: float, n_boot: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Every metric in METRICS on each of ``n_boot`` class-stratified resamples, as (n_boot,) arrays."""
    labels = np.asarray(labels).astype(int)
    ranking = Ranking.of(labels, scores)
    draws = stratified_draws(len(ranking.real), len(ranking.fake), n_boot, np.random.default_rng(seed))
    chunks = [metrics_from_counts(ranking.values, *resampled_counts(ranking, *draw), threshold) for draw in draws]
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in METRICS}


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap samples."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every metric over ``n_boot`` class-stratified resamples."""
    samples = bootstrap_samples(labels, scores, threshold, n_boot, seed)
    return {name: percentile_interval(values, level) for name, values in samples.items()}


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion ``successes / n`` (n > 0)."""
    from scipy.stats import binomtest  # here: `bench list` loads no scipy/sklearn
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def _interval(
    declared: ScoreMetric, value: float, samples: np.ndarray, counts: Confusion, level: float
) -> tuple[list | None, str | None]:
    """A metric's interval and how it was made: the bootstrap percentiles, or Wilson's interval for a
    proportion whose resamples are all equal (None for a proportion of nothing, e.g. precision with no
    image called fake). None where the percentiles leave out the point ``value``: resamples with tied
    duplicates can all lie on one side of it (average precision at an AUC near 0), and no bootstrap interval
    made from them (percentile, basic or BCa) would contain it."""
    proportion = declared.proportion(counts)
    if proportion is not None and samples.min() == samples.max():
        successes, n = proportion
        return (list(wilson_interval(successes, n, level)), "wilson") if n else (None, None)
    low, high = percentile_interval(samples, level)
    return ([low, high], "bootstrap-percentile") if low <= value <= high else (None, None)


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    samples: Mapping[str, np.ndarray] | None = None,
) -> dict:
    """Metrics with intervals and the confusion matrix ([[TN, FP], [FN, TP]], rows = true real, fake).

    Each metric is ``{"value", "ci", "interval"}``; ``interval`` names the method of ``ci``:
    "bootstrap-percentile", "wilson" (see :func:`_interval`) or None when there is no interval. ``samples``: the
    resampled metrics when already drawn (:func:`bootstrap_samples` of the same arguments, e.g. from
    :class:`bench.statistics.ResampleCache`).
    """
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) != 2:
        raise ValueError("evaluation needs both real (0) and fake (1) images")
    scores = np.asarray(scores, dtype=np.float64)
    values = point_metrics(labels, scores, threshold)
    from sklearn.metrics import confusion_matrix  # here: `bench list` loads no scipy/sklearn
    confusion = confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1])
    counts = Confusion(*(int(count) for count in confusion.ravel()))
    if samples is None and n_boot:
        samples = bootstrap_samples(labels, scores, threshold, n_boot, seed)
    intervals = {
        name: _interval(declared, values[name], samples[name], counts, level) if samples else (None, None)
        for name, declared in METRICS.items()
    }
    return {
        "metrics": {
            name: {"value": float(values[name]), "ci": ci, "interval": method}
            for name, (ci, method) in intervals.items()
        },
        "confusion_matrix": confusion.tolist(),
        "n_real": int((labels == 0).sum()),
        "n_fake": int((labels == 1).sum()),
        "threshold": float(threshold),
        "bootstrap": {"resamples": n_boot, "level": level, "seed": seed, "stratified": True},
    }


def evasion_rate(clean_scores: np.ndarray, perturbed_scores: np.ndarray, threshold: float,
                 level: float = 0.95) -> dict:
    """Share of the fakes detected on clean input that the perturbation turns into "real".

    The interval is Wilson's score interval for a binomial proportion; ``n`` is the number of fakes
    detected on clean input, the denominator. With no detected fakes the rate is undefined (NaN).
    """
    detected = np.asarray(clean_scores, dtype=np.float64) >= threshold
    n = int(detected.sum())
    if n == 0:
        return {"value": float("nan"), "ci": None, "n": 0}
    evaded = int((np.asarray(perturbed_scores, dtype=np.float64)[detected] < threshold).sum())
    return {"value": evaded / n, "ci": list(wilson_interval(evaded, n, level)), "n": n}
