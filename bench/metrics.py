"""Detection metrics with stratified bootstrap confidence intervals ("fake" is the positive class).

Point estimates come from scikit-learn. The bootstrap resamples reals and fakes separately (so both
classes are present in every resample) and reduces each resample to how many reals and fakes it drew at
each distinct score. Every metric then comes from those counts, for a chunk of resamples at once: the
threshold metrics from the confusion counts, ROC AUC from ranks (Mann-Whitney, ties as midranks) and
average precision as scikit-learn defines it (ties included), so each resample's value equals
scikit-learn's on that resample. Intervals are percentiles of the resampled values; a proportion whose
resamples are all equal (as at 0 or 1) gets Wilson's score interval instead, and a metric whose percentiles
leave out its own value gets none. Scores are compared with thresholds as float64 everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "average_precision",
    "accuracy_real",
    "accuracy_fake",
    "balanced_accuracy",
)

# Draws (resamples x images) held in memory at once while bootstrapping.
CHUNK_ELEMENTS = 1 << 21


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises balanced accuracy on (validation) data; predict fake at >=."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], np.max(scores)))


def point_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric in METRICS at ``threshold`` (scikit-learn)."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)  # the bootstrap's dtype: a threshold splits both alike
    predicted = (scores >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    return {
        "accuracy": accuracy_score(labels, predicted),
        "precision": precision_score(labels, predicted, zero_division=0),
        "recall": recall_score(labels, predicted, zero_division=0),
        "f1": f1_score(labels, predicted, zero_division=0),
        "roc_auc": roc_auc_score(labels, scores) if both else float("nan"),
        "average_precision": average_precision_score(labels, scores) if both else float("nan"),
        "accuracy_real": accuracy_score(labels[labels == 0], predicted[labels == 0]) if (labels == 0).any()
        else float("nan"),
        "accuracy_fake": accuracy_score(labels[labels == 1], predicted[labels == 1]) if (labels == 1).any()
        else float("nan"),
        "balanced_accuracy": balanced_accuracy_score(labels, predicted) if both else float("nan"),
    }


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
    """Every metric in METRICS for each row of (B, U) real and fake counts at the distinct scores ``values``.

    ROC AUC is the Mann-Whitney statistic with ties counted as half; average precision is
    sum_u (R_u - R_(u-1)) P_u over the distinct scores u from the top, as scikit-learn computes it.
    """
    n_real, n_fake = reals.sum(1), fakes.sum(1)
    reals_below = np.cumsum(reals, 1) - reals
    fakes_below = np.cumsum(fakes, 1) - fakes
    auc = (fakes * (2 * reals_below + reals)).sum(1) / (2.0 * n_real * n_fake)
    at_or_above = np.maximum((n_real + n_fake)[:, None] - reals_below - fakes_below, 1)
    ap = (fakes * ((n_fake[:, None] - fakes_below) / at_or_above)).sum(1) / n_fake
    first = int(np.searchsorted(values, threshold, side="left"))
    tp, fp = fakes[:, first:].sum(1), reals[:, first:].sum(1)
    return {
        **count_metrics(tp, n_fake - tp, n_real - fp, fp),
        "roc_auc": auc,
        "average_precision": ap,
    }


def count_metrics(tp: np.ndarray, fn: np.ndarray, tn: np.ndarray, fp: np.ndarray) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts (arrays over resamples); 0 where undefined."""

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(np.shape(num), float), where=den > 0)

    precision, recall, specificity = ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(tn, tn + fp)
    return {
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "precision": precision,
        "recall": recall,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy_real": specificity,
        "accuracy_fake": recall,
        "balanced_accuracy": (specificity + recall) / 2,
    }


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
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def _proportions(tn: int, fp: int, fn: int, tp: int) -> dict[str, tuple[int, int]]:
    """(successes, trials) of the metrics that are binomial proportions."""
    return {
        "accuracy": (tp + tn, tp + tn + fp + fn),
        "precision": (tp, tp + fp),
        "recall": (tp, tp + fn),
        "accuracy_real": (tn, tn + fp),
        "accuracy_fake": (tp, tp + fn),
    }


def _interval(
    name: str, value: float, samples: np.ndarray, proportions: dict[str, tuple[int, int]], level: float
) -> tuple[list | None, str | None]:
    """A metric's interval and how it was made: the bootstrap percentiles, or Wilson's interval for a
    proportion whose resamples are all equal (None for a proportion of nothing, e.g. precision with no
    image called fake). None where the percentiles leave out the point ``value``: resamples with tied
    duplicates can all lie on one side of it (average precision at an AUC near 0), and no bootstrap interval
    made from them (percentile, basic or BCa) would contain it."""
    if name in proportions and samples.min() == samples.max():
        successes, n = proportions[name]
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
) -> dict:
    """Metrics with intervals and the confusion matrix ([[TN, FP], [FN, TP]], rows = true real, fake).

    Each metric is ``{"value", "ci", "interval"}``; ``interval`` names the method of ``ci``:
    "bootstrap-percentile", "wilson" (see :func:`_interval`) or None when there is no interval.
    """
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) != 2:
        raise ValueError("evaluation needs both real (0) and fake (1) images")
    scores = np.asarray(scores, dtype=np.float64)
    values = point_metrics(labels, scores, threshold)
    confusion = confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1])
    proportions = _proportions(*(int(count) for count in confusion.ravel()))
    samples = bootstrap_samples(labels, scores, threshold, n_boot, seed) if n_boot else None
    intervals = {
        name: _interval(name, values[name], samples[name], proportions, level) if samples else (None, None)
        for name in METRICS
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
