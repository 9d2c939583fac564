"""Statistics across training seeds and between detectors measured on the same test images.

A *run* is one training seed's ``(labels, scores, threshold)`` on a test set. The functions over runs take runs
on the same test images (the same labels, in the same order) and reuse the bootstrap of :mod:`bench.metrics`:
class-stratified draws of the test images, reduced to counts at the distinct scores.

With several seeds, a number is the mean over seeds, and its uncertainty has two parts: the test images
(estimated by bootstrapping them, every seed scored on the same draw, because all seeds were measured on the
same images) and the training seeds (the variance across seeds over their number). With 3-5 seeds the seed part
is known to a few degrees of freedom only, so intervals and tests are t-type (a generalised t that draws the
seed variance from its chi-square distribution, :func:`t_test`) rather than a percentile bootstrap over seeds,
which cannot be wider than the seeds' own spread (``benchmarks/coverage.py`` measures the coverage).

- :func:`seed_mean_interval`, :func:`seed_difference_test`, :func:`t_test`: the t interval and test from per-seed
  values and an image variance (for numbers that do not come from one cell's runs, e.g. a mean over sources).
- :func:`seed_values`, :func:`image_resamples`, :func:`shared_image_variance`: each run's metrics, the same on
  bootstrap draws of the test images shared by every run, and the part of a seed mean's bootstrap variance that
  the seeds share (the rest is already in the variance across seeds).
- :func:`seed_bootstrap`: one cell over its seeds: mean, spread and interval of every metric.
- :func:`paired_bootstrap`: the difference between two detectors (or runs) on the same test images.
- :func:`source_resamples`: the same for runs that share their real test images but not their fakes (the
  generalization view's macro means over generator families).
- :class:`ResampleCache`: each run's resampled metrics, computed once and shared by the functions above.
- :func:`holm`: Holm's step-down adjustment of a family of p-values.
- :func:`delong_test`: DeLong's test for the difference of two correlated ROC AUCs.
- :func:`wilson_interval`: Wilson's score interval for a proportion (from :mod:`bench.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.stats import chi2, norm, rankdata

from bench.metrics import (
    CHUNK_ELEMENTS,
    METRICS,
    Ranking,
    bootstrap_samples,
    metrics_from_counts,
    percentile_interval,
    resampled_counts,
    wilson_interval,
)

__all__ = [
    "ResampleCache",
    "Run",
    "delong_test",
    "holm",
    "image_resamples",
    "paired_bootstrap",
    "seed_bootstrap",
    "seed_difference_test",
    "seed_mean_interval",
    "seed_values",
    "shared_image_variance",
    "t_test",
    "wilson_interval",
]

Run = tuple[ArrayLike, ArrayLike, float]

SEED_BOOTSTRAP_COVERS = (
    "the mean over training seeds, allowing for retraining with other seeds and for drawing another test set "
    "of the same class sizes; each seed's threshold is held fixed"
)
IMAGES_ONLY_COVERS = "drawing another test set of the same class sizes, for this training seed only"


FIDUCIAL_DRAWS = 2000  # draws of the variance from its fiducial distribution (a fixed Latin hypercube: deterministic)


@lru_cache(maxsize=256)
def _inverse_chi2(df: float, term: int) -> np.ndarray:
    """df / chi2(df) at the midpoints of :data:`FIDUCIAL_DRAWS` equal-probability strata, shuffled in an order fixed
    by ``term`` (so that the draws of different terms pair up independently)."""
    middles = (np.arange(FIDUCIAL_DRAWS) + 0.5) / FIDUCIAL_DRAWS
    draws = df / chi2.ppf(np.random.default_rng(term).permutation(middles), df)
    draws.flags.writeable = False
    return draws


def _variance_draws(terms: Sequence[tuple[float, float]]) -> np.ndarray:
    """Draws of the total variance: each term ``(v, df)`` as v * df / chi2(df) (fixed where df is infinite)."""
    total = np.zeros(FIDUCIAL_DRAWS)
    for term, (variance, df) in enumerate(terms):
        if variance > 0:
            total += variance * (_inverse_chi2(float(df), term) if math.isfinite(df) else 1.0)
    return total


def t_test(difference: float, terms: Sequence[tuple[float, float]], level: float = 0.95,
           bounds: tuple[float, float] | None = None) -> dict:
    """An interval and two-sided test of ``difference`` whose variance is the sum of independent ``terms``, each an
    estimated (variance, degrees of freedom) pair (``math.inf`` for a variance taken as known).

    A generalised (fiducial) t: the p-value is the mean over draws of each variance from its scaled chi-square
    distribution (v * df / chi2(df)) of the two-sided normal p-value, and the interval holds the values whose
    p-value is at least 1 - ``level``. With one estimated term it is Student's t with that term's degrees of
    freedom, with only known terms the normal test; in between it holds its level where Welch-Satterthwaite's
    degrees of freedom do not (with 3 seeds the latter's false-positive rate reaches 7-8%). Returns ``se`` (the
    square root of the summed variances), ``ci`` (clipped to ``bounds``) and ``p_value`` (1 for a zero difference
    without variance, 0 for a nonzero one); the p-value is not bounded below by any number of resamples.
    """
    variance = float(sum(v for v, _ in terms))
    if variance <= 0:
        low = high = difference
        p_value = 1.0 if difference == 0 else 0.0
    else:
        scale = np.sqrt(_variance_draws(terms))
        p_value = float(np.mean(2 * norm.sf(abs(difference) / scale)))
        alpha = 1 - level
        half = brentq(lambda h: np.mean(2 * norm.sf(h / scale)) - alpha, 0.0, float(norm.isf(alpha / 2) * scale.max()))
        low, high = difference - half, difference + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"se": math.sqrt(variance), "ci": [low, high], "p_value": p_value}


def _seed_term(values: np.ndarray) -> list[tuple[float, float]]:
    """The variance of the mean over seeds owed to the seeds: (sample variance / seeds, seeds - 1); none for one."""
    return [(float(values.var(ddof=1)) / len(values), len(values) - 1.0)] if len(values) > 1 else []


def seed_mean_interval(per_seed: ArrayLike, image_variance: float = 0.0, level: float = 0.95,
                       image_df: float = math.inf, bounds: tuple[float, float] | None = (0.0, 1.0)) -> dict:
    """The mean of per-seed values with a t-type interval (:func:`t_test`): variance = the variance across seeds /
    seeds (seeds - 1 degrees of freedom; it holds the retraining and the test-image variation the seeds do not
    share) + ``image_variance``, the test-image variation the seeds share (:func:`shared_image_variance`; the whole
    bootstrap variance of the seed mean is a conservative stand-in), estimated with ``image_df`` degrees of freedom.

    Returns ``mean``, ``std`` (across seeds, ddof=1; NaN with one), ``se`` and ``ci`` (clipped to ``bounds``).
    With one seed the seed part is not covered.
    """
    values = np.asarray(per_seed, dtype=np.float64)
    mean = float(values.mean())
    test = t_test(mean, [*_seed_term(values), (float(image_variance), image_df)], level, bounds)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return {"mean": mean, "std": std, "se": test["se"], "ci": test["ci"]}


def seed_difference_test(a: ArrayLike, b: ArrayLike, image_variance: float = 0.0, paired: bool = False,
                         level: float = 0.95, image_df: float = math.inf) -> dict:
    """The difference of the means over seeds, mean(a) - mean(b), with a t interval and test.

    Variance: ``image_variance`` (of the difference, on shared test images: see :func:`seed_mean_interval`) + the
    seed part: the variance of the per-seed differences / seeds when ``paired`` (a[i] and b[i] share a training
    seed), else each side's variance across seeds / its seeds (a side with one seed adds nothing: its seed
    variation is not covered); tested with :func:`t_test`. Returns ``difference``, ``se``, ``ci`` (within
    [-1, 1]) and ``p_value``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if paired and len(a) != len(b):
        raise ValueError("paired seeds need as many values on each side")
    terms = _seed_term(a - b) if paired else [*_seed_term(a), *_seed_term(b)]
    difference = float(a.mean() - b.mean())
    return {"difference": difference} | t_test(difference, [*terms, (float(image_variance), image_df)], level,
                                               (-1.0, 1.0))


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate), NaN entries left out of the family and kept."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    steps = p[order] * (len(order) - np.arange(len(order)))
    adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted


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


def seed_values(runs: Sequence[Run]) -> dict[str, np.ndarray]:
    """Each metric's point value per run, as (seeds,) arrays: from the counts at the distinct scores, as every
    resample is measured (equal to scikit-learn's values, :func:`bench.metrics.point_metrics`, and much faster)."""
    values = []
    for labels, scores, threshold in runs:
        ranking = Ranking.of(labels, scores)
        values.append(metrics_from_counts(ranking.values, *ranking.counts(), float(threshold)))
    return {name: np.array([value[name][0] for value in values], dtype=np.float64) for name in METRICS}


class ResampleCache:
    """Each run's metrics on the class-stratified bootstrap draws of its test images, computed once per (run,
    resamples, seed). A run's draws depend only on its class sizes and the seed, so every function over runs on the
    same test images (and the recomputation of a record's intervals) can share them. Runs are told apart by identity:
    pass the same run object (e.g. from :class:`bench.integrity.ScoreFiles`) to reuse its resamples."""

    def __init__(self) -> None:
        self._samples: dict[tuple[int, int, int], tuple[Run, dict[str, np.ndarray]]] = {}

    def samples(self, run: Run, n_boot: int, seed: int) -> dict[str, np.ndarray]:
        """Every metric of ``run`` on each of ``n_boot`` draws (:func:`bench.metrics.bootstrap_samples`)."""
        key = (id(run), n_boot, seed)
        if key not in self._samples:  # the run is kept with its samples, so its id is not reused meanwhile
            labels, scores, threshold = run
            self._samples[key] = (run, bootstrap_samples(labels, scores, float(threshold), n_boot, seed))
        return self._samples[key][1]


def image_resamples(groups: Sequence[Sequence[Run]], n_boot: int = 1000, seed: int = 0,
                    cache: ResampleCache | None = None) -> list[dict[str, np.ndarray]]:
    """Per group of runs, each metric of each run on each of ``n_boot`` class-stratified draws of the test images, as
    (n_boot, runs) arrays; every run of every group is scored on the same draws (those of
    :func:`bench.metrics.bootstrap_samples` under the same ``seed``), taken from ``cache`` where given."""
    _labels(*groups)
    if n_boot < 2:
        raise ValueError("the bootstrap needs at least 2 resamples (the suite's `bootstrap:`)")
    cache = cache or ResampleCache()
    per_run = [[cache.samples(run, n_boot, seed) for run in group] for group in groups]
    return [{name: np.stack([samples[name] for samples in group], 1) for name in METRICS} for group in per_run]


def source_resamples(groups: Mapping[Hashable, tuple[str, Sequence[Run]]], n_boot: int = 1000, seed: int = 0,
                     names: Sequence[str] = tuple(METRICS)) -> dict[Hashable, dict[str, np.ndarray]]:
    """Per group (a fake test source's name and runs scored on it), the metrics ``names`` of each run on each of
    ``n_boot`` draws, as (n_boot, runs) arrays, for runs that share their real test images (the same reals first,
    :func:`bench.compare.load_run`) but not their fakes: every draw takes the reals once for all groups and each fake
    source's images on their own, so a mean over sources keeps the covariance the shared reals give it."""
    runs = [run for _, group in groups.values() for run in group]
    n_real = {int((np.asarray(labels) == 0).sum()) for labels, _, _ in runs}
    if len(n_real) != 1:
        raise ValueError("runs must share their real test images (as many reals, first)")
    n_real = n_real.pop()
    sizes = {source: len(group[0][1]) - n_real for source, group in groups.values()}
    rankings = {key: [(Ranking.of(labels, scores), float(threshold)) for labels, scores, threshold in group]
                for key, (_, group) in groups.items()}
    rng = np.random.default_rng(seed)
    rows = max(1, CHUNK_ELEMENTS // (n_real + max(sizes.values())))
    chunks: dict[Hashable, list[dict[str, np.ndarray]]] = {key: [] for key in groups}
    for start in range(0, n_boot, rows):
        count = min(rows, n_boot - start)
        real = rng.integers(0, n_real, (count, n_real))
        fakes = {source: rng.integers(0, sizes[source], (count, sizes[source])) for source in sorted(sizes)}
        for key, (source, _) in groups.items():
            per_run = [metrics_from_counts(ranking.values, *resampled_counts(ranking, real, fakes[source]), threshold)
                       for ranking, threshold in rankings[key]]
            chunks[key].append({name: np.stack([values[name] for values in per_run], 1) for name in names})
    return {key: {name: np.concatenate([chunk[name] for chunk in parts]) for name in names}
            for key, parts in chunks.items()}


def _unshared(resampled: np.ndarray, per_seed: np.ndarray) -> float:
    """The bootstrap variance of a seed mean owed to test-image variation that its seeds do not share: the mean over
    resamples of the variance across seeds of each seed's resampled deviation, over the number of seeds (0 for one
    seed)."""
    seeds = resampled.shape[1]
    return float((resampled - per_seed).var(axis=1, ddof=1).mean()) / seeds if seeds > 1 else 0.0


def shared_image_variance(resampled: np.ndarray, per_seed: ArrayLike, minus: tuple[np.ndarray, ArrayLike] | None = None
                          ) -> float:
    """The bootstrap variance over test images of a mean over seeds (or of the difference of two such means, the
    second side given as ``minus``), less the part the seeds do not share, which the variance across seeds already
    holds; at least 0. ``resampled``: (draws, seeds) values from :func:`image_resamples`; ``per_seed``: the observed
    values. With one seed a side it is that side's whole bootstrap variance."""
    sides = [(np.asarray(resampled), np.asarray(per_seed, dtype=np.float64))]
    if minus is not None:
        sides.append((np.asarray(minus[0]), np.asarray(minus[1], dtype=np.float64)))
    means = sides[0][0].mean(1) - (sides[1][0].mean(1) if minus is not None else 0.0)
    return max(0.0, float(means.var(ddof=1)) - sum(_unshared(*side) for side in sides))


def _within_resamples(ci: tuple[float, float], value: float) -> list[float] | None:
    """A percentile interval, or None where it leaves out its own point value (resamples with tied duplicates can
    all lie on one side of it, as for average precision at an AUC near 0)."""
    return list(ci) if ci[0] <= value <= ci[1] else None


def seed_bootstrap(runs: Sequence[Run], n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                   cache: ResampleCache | None = None) -> dict:
    """Aggregate one cell over training seeds (one run per seed, on the same test images).

    Per metric: ``mean`` over seeds, ``std`` across seeds (ddof=1; NaN with one seed), ``per_seed`` values,
    ``image_variance`` (:func:`shared_image_variance`: the bootstrap variance over test images of the mean over
    seeds, less the part the seeds do not share, which their variance holds), ``se``, ``ci`` and
    ``interval`` (how ``ci`` was made). With several seeds, ``ci`` is the t interval of :func:`seed_mean_interval`
    ("t"), covering :data:`SEED_BOOTSTRAP_COVERS`. With one seed it is the percentile interval of
    :func:`bench.metrics.bootstrap_intervals` (same draws under the same ``seed``; "bootstrap-percentile"),
    covering the test images only, and None where it leaves out its own point value.
    """
    resamples = image_resamples([runs], n_boot, seed, cache)[0]
    values = seed_values(runs)
    metrics = {}
    for name in METRICS:
        image_variance = shared_image_variance(resamples[name], values[name])
        summary = seed_mean_interval(values[name], image_variance, level, n_boot - 1.0)
        if len(runs) == 1:
            ci = _within_resamples(percentile_interval(resamples[name][:, 0], level), summary["mean"])
            summary |= {"ci": ci, "interval": "bootstrap-percentile" if ci else None}
        else:
            summary |= {"interval": "t"}
        metrics[name] = summary | {"per_seed": values[name].tolist(), "image_variance": image_variance}
    return {
        "metrics": metrics,
        "n_seeds": len(runs),
        "bootstrap": {"resamples": n_boot, "level": level, "seed": seed, "stratified": True,
                      "covers": SEED_BOOTSTRAP_COVERS if len(runs) > 1 else IMAGES_ONLY_COVERS},
    }


def paired_bootstrap(
    a: Sequence[Run], b: Sequence[Run], n_boot: int = 1000, level: float = 0.95, seed: int = 0,
    paired: bool | None = None, cache: ResampleCache | None = None,
) -> dict:
    """The difference a - b of every metric (means over each side's seeds) on the same test images.

    The test-image part of its variance is bootstrapped (:func:`shared_image_variance`): each resample draws the
    test images once (stratified by class) and scores every run of both sides on that draw. The seed part comes from
    the per-seed values (see :func:`seed_difference_test`): paired seeds (run i of a with run i of b; by default
    when both sides have as many runs) or each side on its own. Per metric: the observed ``difference``, ``se``, the
    t ``ci`` and the two-sided ``p_value``, which is not bounded below by the number of resamples. ``seeds_covered``
    is False when every side has one seed (the test then covers the test images only).
    """
    paired = len(a) == len(b) if paired is None else paired
    resampled_a, resampled_b = image_resamples([a, b], n_boot, seed, cache)
    values_a, values_b = seed_values(a), seed_values(b)
    metrics = {}
    for name in METRICS:
        image_variance = (shared_image_variance(resampled_a[name] - resampled_b[name], values_a[name] - values_b[name])
                          if paired else shared_image_variance(resampled_a[name], values_a[name],
                                                               minus=(resampled_b[name], values_b[name])))
        metrics[name] = seed_difference_test(values_a[name], values_b[name], image_variance, paired, level,
                                             n_boot - 1.0)
    return {
        "metrics": metrics,
        "paired_seeds": paired,
        "seeds_covered": len(a) > 1 or len(b) > 1,
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


DELONG_NOT_APPLICABLE = "n/a: DeLong's test needs at least 2 real and 2 fake images"


def delong_test(
    labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike, level: float = 0.95
) -> dict[str, float | list[float] | str | None]:
    """DeLong's test of ROC AUC(a) - AUC(b) for two score sets on the same images (fast DeLong, Sun & Xu 2014).

    Returns the AUCs, their ``difference``, its standard error ``se``, ``z``, the two-sided normal ``p_value``
    and the normal ``ci`` at ``level``. With fewer than 2 images in a class there is no variance to estimate:
    ``se``, ``z`` and ``p_value`` are NaN, ``ci`` None and ``note`` says so (:data:`DELONG_NOT_APPLICABLE`).
    """
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) != 2:
        raise ValueError("DeLong's test needs both real (0) and fake (1) images")
    (fake_a, real_a), (fake_b, real_b) = (_structural_components(labels, np.asarray(s, np.float64))
                                          for s in (scores_a, scores_b))
    auc_a, auc_b = float(fake_a.mean()), float(fake_b.mean())
    difference = auc_a - auc_b
    if min(len(fake_a), len(real_a)) < 2:
        nan = float("nan")
        return {"auc_a": auc_a, "auc_b": auc_b, "difference": difference, "se": nan, "z": nan, "p_value": nan,
                "ci": None, "note": DELONG_NOT_APPLICABLE}
    # Var(AUC_a - AUC_b) = Var(V10_a - V10_b) / n_fake + Var(V01_a - V01_b) / n_real (sample variances)
    variance = np.var(fake_a - fake_b, ddof=1) / len(fake_a) + np.var(real_a - real_b, ddof=1) / len(real_a)
    se = float(np.sqrt(variance))
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
        "note": None,
    }
