"""Detection metrics with stratified bootstrap confidence intervals ("fake" is the positive class).

Point estimates come from scikit-learn. The bootstrap resamples reals and fakes separately (so both
classes are present in every resample), recomputes threshold metrics from the confusion counts of each
resample (vectorised) and the ranking metrics with scikit-learn, and reports percentile intervals.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
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
)


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises balanced accuracy on (validation) data; predict fake at >=."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], np.max(scores)))


def point_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric in METRICS at ``threshold`` (scikit-learn)."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(scores) >= threshold).astype(int)
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
    }


def _count_metrics(tp: np.ndarray, fn: np.ndarray, tn: np.ndarray, fp: np.ndarray) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts (arrays over bootstrap resamples); 0 where undefined."""

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(np.shape(num), float), where=den > 0)

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "precision": precision,
        "recall": recall,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy_real": ratio(tn, tn + fp),
        "accuracy_fake": recall,
    }


def bootstrap_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every metric over ``n_boot`` class-stratified resamples."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    idx = np.concatenate(
        [rng.choice(real, (n_boot, len(real))), rng.choice(fake, (n_boot, len(fake)))], axis=1
    )
    predicted = scores[idx] >= threshold
    is_fake = labels[idx] == 1
    tp = (predicted & is_fake).sum(1)
    fp = (predicted & ~is_fake).sum(1)
    samples = _count_metrics(tp, len(fake) - tp, len(real) - fp, fp)
    samples["roc_auc"] = np.array([roc_auc_score(labels[i], scores[i]) for i in idx])
    samples["average_precision"] = np.array([average_precision_score(labels[i], scores[i]) for i in idx])
    tail = (1 - level) / 2 * 100
    return {
        name: (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
        for name, values in samples.items()
    }


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Metrics with intervals and the confusion matrix ([[TN, FP], [FN, TP]], rows = true real, fake)."""
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) != 2:
        raise ValueError("evaluation needs both real (0) and fake (1) images")
    values = point_metrics(labels, scores, threshold)
    intervals = bootstrap_intervals(labels, scores, threshold, n_boot, level, seed) if n_boot else {}
    predicted = (np.asarray(scores) >= threshold).astype(int)
    return {
        "metrics": {
            name: {
                "value": float(values[name]),
                "ci": list(intervals[name]) if name in intervals else None,
            }
            for name in METRICS
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        "n_real": int((labels == 0).sum()),
        "n_fake": int((labels == 1).sum()),
        "threshold": float(threshold),
        "bootstrap": {"resamples": n_boot, "level": level, "seed": seed, "stratified": True},
    }


def evasion_rate(clean_scores: np.ndarray, perturbed_scores: np.ndarray, threshold: float,
                 level: float = 0.95) -> dict:
    """Share of the fakes detected on clean input that the perturbation turns into "real".

    The interval is Wilson's score interval for a binomial proportion (scipy); ``n`` is the number of
    fakes detected on clean input, the denominator. With no detected fakes the rate is undefined (NaN).
    """
    from scipy.stats import binomtest

    detected = np.asarray(clean_scores) >= threshold
    n = int(detected.sum())
    if n == 0:
        return {"value": float("nan"), "ci": None, "n": 0}
    evaded = int((np.asarray(perturbed_scores)[detected] < threshold).sum())
    interval = binomtest(evaded, n).proportion_ci(confidence_level=level, method="wilson")
    return {"value": evaded / n, "ci": [float(interval.low), float(interval.high)], "n": n}
