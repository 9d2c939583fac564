"""Statistics across training seeds and between detectors measured on the same test images.

A *run* is one training seed's ``(labels, scores, threshold)`` on a test set. All functions here take runs
on the same test images (the same labels, in the same order) and reuse the bootstrap of
:mod:`bench.metrics`: class-stratified draws of the test images, reduced to counts at the distinct scores.

- :func:`seed_bootstrap`: mean, spread and a two-level bootstrap interval over seeds and test images.
- :func:`paired_bootstrap`: the difference between two detectors (or runs) under paired resampling.
- :func:`delong_test`: DeLong's test for the difference of two correlated ROC AUCs.
- :func:`wilson_interval`: Wilson's score interval for a proportion (from :mod:`bench.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm, rankdata

from bench.metrics import (
    METRICS,
    Ranking,
    metrics_from_counts,
    percentile_interval,
    point_metrics,
    resampled_counts,
    stratified_draws,
    wilson_interval,
)

__all__ = ["Run", "delong_test", "paired_bootstrap", "seed_bootstrap", "wilson_interval"]

Run = tuple[ArrayLike, ArrayLike, float]

SEED_BOOTSTRAP_COVERS = (
    "the mean over training seeds, allowing for retraining with other seeds and for drawing another test set "
    "of the same class sizes; each seed's threshold is held fixed"
)


def _labels(*groups: Sequence[Run]) -> np.ndarray:
    """The labels shared by every run; an error unless all runs are on the same test images."""
    runs = [run for group in groups for run in group]
    if not runs:
        raise ValueError("no runs")
    labels = np.asarray(runs[0][0]).astype(int)
    if any(not np.array_equal(np.asarray(run[0]).astype(int), labels) for run in runs):
        raise ValueError("runs must be measured on the same test images (the same labels in the same order)")
    if len(np.unique(labels)) != 2:
        raise ValueError("evaluation needs both real (0) and fake (1) images")
    return labels


def _seed_values(runs: Sequence[Run]) -> dict[str, np.ndarray]:
    """Each metric's point value per run (scikit-learn), as (seeds,) arrays."""
    values = [point_metrics(labels, scores, threshold) for labels, scores, threshold in runs]
    return {name: np.array([value[name] for value in values], dtype=float) for name in METRICS}


def _seed_draws(rng: np.random.Generator, rows: int, seeds: int) -> np.ndarray:
    """(rows, seeds) multiplicities of seeds drawn with replacement; all ones (no draw) for one seed."""
    if seeds == 1:
        return np.ones((rows, 1), int)
    drawn = rng.integers(0, seeds, (rows, seeds)) + np.arange(rows)[:, None] * seeds
    return np.bincount(drawn.ravel(), minlength=rows * seeds).reshape(rows, seeds)


def _resampled_means(
    rankings: Sequence[Ranking], thresholds: Sequence[float], real: np.ndarray, fake: np.ndarray, seeds: np.ndarray
) -> dict[str, np.ndarray]:
    """Each metric's mean over the drawn seeds (multiplicities ``seeds``), all seeds on the same image draw."""
    per_seed = [
        metrics_from_counts(ranking.values, *resampled_counts(ranking, real, fake), threshold)
        for ranking, threshold in zip(rankings, thresholds, strict=True)
    ]
    return {
        name: (np.stack([values[name] for values in per_seed], 1) * seeds).sum(1) / seeds.shape[1]
        for name in METRICS
    }


def _prepared(runs: Sequence[Run]) -> tuple[list[Ranking], list[float]]:
    """Each run's scores ranked once, and its threshold."""
    return [Ranking.of(labels, scores) for labels, scores, _ in runs], [float(run[2]) for run in runs]


def seed_bootstrap(runs: Sequence[Run], n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Aggregate one cell over training seeds (one run per seed, on the same test images).

    Per metric: ``mean`` over seeds, ``std`` across seeds (ddof=1; NaN with one seed), ``per_seed`` values and
    ``ci``, a two-level percentile interval. Each resample draws the seeds with replacement and the test
    images once (stratified by class); every drawn seed is scored on that same image draw, because all seeds
    were measured on the same images (independent draws per seed would understate the test-set part). The
    interval covers :data:`SEED_BOOTSTRAP_COVERS`. With one seed it is the image bootstrap of
    :func:`bench.metrics.bootstrap_intervals` (same draws under the same ``seed``).
    """
    labels = _labels(runs)
    rankings, thresholds = _prepared(runs)
    rng = np.random.default_rng(seed)
    chunks = [
        _resampled_means(rankings, thresholds, real, fake, _seed_draws(rng, len(real), len(runs)))
        for real, fake in stratified_draws(int((labels == 0).sum()), int((labels == 1).sum()), n_boot, rng)
    ]
    values = _seed_values(runs)
    return {
        "metrics": {
            name: {
                "mean": float(values[name].mean()),
                "std": float(values[name].std(ddof=1)) if len(runs) > 1 else float("nan"),
                "per_seed": values[name].tolist(),
                "ci": list(percentile_interval(np.concatenate([chunk[name] for chunk in chunks]), level)),
            }
            for name in METRICS
        },
        "n_seeds": len(runs),
        "bootstrap": {"resamples": n_boot, "level": level, "seed": seed, "stratified": True,
                      "covers": SEED_BOOTSTRAP_COVERS},
    }


def _p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference": twice the smaller share of resampled differences on
    either side of 0 (each share counted with +1 in numerator and denominator), at most 1."""
    below, above = (differences <= 0).sum(), (differences >= 0).sum()
    return float(min(1.0, 2 * (1 + min(below, above)) / (1 + len(differences))))


def paired_bootstrap(
    a: Sequence[Run], b: Sequence[Run], n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict:
    """The difference a - b of every metric (means over each side's seeds) on the same test images.

    Each resample draws the test images once (stratified by class) and scores both sides on that draw. With
    several seeds, seeds are resampled too: paired by index when both sides have the same number of runs
    (run i of a with run i of b), otherwise independently per side. Per metric: the observed ``difference``,
    its percentile ``ci`` and a two-sided bootstrap ``p_value`` (see :func:`_p_value`).
    """
    labels = _labels(a, b)
    (rank_a, thr_a), (rank_b, thr_b) = _prepared(a), _prepared(b)
    paired = len(a) == len(b)
    rng = np.random.default_rng(seed)
    chunks = []
    for real, fake in stratified_draws(int((labels == 0).sum()), int((labels == 1).sum()), n_boot, rng):
        seeds_a = _seed_draws(rng, len(real), len(a))
        seeds_b = seeds_a if paired else _seed_draws(rng, len(real), len(b))
        means_a = _resampled_means(rank_a, thr_a, real, fake, seeds_a)
        means_b = _resampled_means(rank_b, thr_b, real, fake, seeds_b)
        chunks.append({name: means_a[name] - means_b[name] for name in METRICS})
    values_a, values_b = _seed_values(a), _seed_values(b)
    metrics = {}
    for name in METRICS:
        differences = np.concatenate([chunk[name] for chunk in chunks])
        metrics[name] = {
            "difference": float(values_a[name].mean() - values_b[name].mean()),
            "ci": list(percentile_interval(differences, level)),
            "p_value": _p_value(differences),
        }
    return {
        "metrics": metrics,
        "paired_seeds": paired,
        "bootstrap": {"resamples": n_boot, "level": level, "seed": seed, "stratified": True, "paired": True},
    }


def _structural_components(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placements from midranks (Sun & Xu 2014): per fake, the share of reals scored below it, and
    per real, the share of fakes scored above it (ties count half)."""
    fake = labels == 1
    n_fake, n_real = int(fake.sum()), int((~fake).sum())
    ranks = rankdata(scores)
    per_fake = (ranks[fake] - rankdata(scores[fake])) / n_real
    per_real = 1 - (ranks[~fake] - rankdata(scores[~fake])) / n_fake
    return per_fake, per_real


def delong_test(
    labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike, level: float = 0.95
) -> dict[str, float | list[float]]:
    """DeLong's test of ROC AUC(a) - AUC(b) for two score sets on the same images (fast DeLong, Sun & Xu 2014).

    Returns the AUCs, their ``difference``, its standard error ``se``, ``z``, the two-sided normal ``p_value``
    and the normal ``ci`` at ``level``.
    """
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) != 2:
        raise ValueError("DeLong's test needs both real (0) and fake (1) images")
    (fake_a, real_a), (fake_b, real_b) = (_structural_components(labels, np.asarray(s, float))
                                          for s in (scores_a, scores_b))
    # Var(AUC_a - AUC_b) = Var(V10_a - V10_b) / n_fake + Var(V01_a - V01_b) / n_real (sample variances)
    variance = np.var(fake_a - fake_b, ddof=1) / len(fake_a) + np.var(real_a - real_b, ddof=1) / len(real_a)
    auc_a, auc_b = float(fake_a.mean()), float(fake_b.mean())
    difference, se = auc_a - auc_b, float(np.sqrt(variance))
    z = difference / se if se > 0 else (0.0 if difference == 0 else float(np.copysign(np.inf, difference)))
    half = float(norm.ppf(0.5 + level / 2)) * se
    return {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "difference": difference,
        "se": se,
        "z": z,
        "p_value": float(2 * norm.sf(abs(z))),
        "ci": [difference - half, difference + half],
    }
