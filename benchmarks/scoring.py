"""Seconds to score one cell (``bench.metrics.evaluate`` at 1,000 resamples), before and after issue 16.

BEFORE is a private copy of the old implementation (ROC AUC and average precision recomputed with
scikit-learn on every resample); AFTER is ``bench.metrics.evaluate``. Scores are synthetic float32 logits
(every score distinct, the slow case for ranking). Then checks that the new intervals agree with the old ones
within Monte Carlo error: the old intervals at one bootstrap seed against the new ones at ``--seeds`` other
seeds, in units of the Monte Carlo standard error of each endpoint (the spread of the new endpoints).

    python benchmarks/scoring.py [--repeat 3] [--seeds 20]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from bench.metrics import METRICS, bootstrap_intervals, count_metrics, evaluate, point_metrics

SIZES = (2_000, 20_000)
RESAMPLES = 1_000
AGREEMENT_IMAGES, AGREEMENT_RESAMPLES = 2_000, 2_000


def _old_bootstrap_intervals(labels: np.ndarray, scores: np.ndarray, threshold: float, n_boot: int = 1000,
                             level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """The implementation before issue 16: scikit-learn's AUC and AP on every resample (threshold metrics from
    the resampled confusion counts, as then; ``count_metrics`` adds balanced accuracy)."""
    rng = np.random.default_rng(seed)
    real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    idx = np.concatenate([rng.choice(real, (n_boot, len(real))), rng.choice(fake, (n_boot, len(fake)))], axis=1)
    predicted = scores[idx] >= threshold
    is_fake = labels[idx] == 1
    tp = (predicted & is_fake).sum(1)
    fp = (predicted & ~is_fake).sum(1)
    samples = count_metrics(tp, len(fake) - tp, len(real) - fp, fp)
    samples["roc_auc"] = np.array([roc_auc_score(labels[i], scores[i]) for i in idx])
    samples["average_precision"] = np.array([average_precision_score(labels[i], scores[i]) for i in idx])
    tail = (1 - level) / 2 * 100
    return {name: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) for name, v in samples.items()}


def _old_evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float, n_boot: int = 1000) -> dict:
    """The old ``evaluate``: point values, intervals and the confusion matrix."""
    values = point_metrics(labels, scores, threshold)
    intervals = _old_bootstrap_intervals(labels, scores, threshold, n_boot)
    return {
        "metrics": {name: {"value": values[name], "ci": intervals.get(name)} for name in METRICS},
        "confusion_matrix": confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1]).tolist(),
    }


def cell(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A balanced cell of ``n`` images: labels and float32 logits (AUC about 0.76)."""
    labels = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    return labels, (labels + np.random.default_rng(seed).normal(0, 1, n)).astype(np.float32)


def seconds(run: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` wall-clock timings."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def timings(repeat: int) -> None:
    print(f"seconds per cell at {RESAMPLES} resamples (fastest of {repeat}; before: 1 run)")
    print(f"{'images':>8} {'before':>8} {'after':>8} {'ratio':>7}")
    for n in SIZES:
        labels, scores = cell(n)
        before = seconds(lambda: _old_evaluate(labels, scores, 0.5, RESAMPLES), 1)  # noqa: B023
        after = seconds(lambda: evaluate(labels, scores, 0.5, RESAMPLES), repeat)  # noqa: B023
        print(f"{n:>8} {before:>8.3f} {after:>8.3f} {before / after:>6.1f}x")


def agreement(seeds: int) -> None:
    labels, scores = cell(AGREEMENT_IMAGES, seed=1)
    old = _old_bootstrap_intervals(labels, scores, 0.5, AGREEMENT_RESAMPLES, seed=0)
    new = {name: [] for name in METRICS}
    for seed in range(1, seeds + 1):
        for name, interval in bootstrap_intervals(labels, scores, 0.5, AGREEMENT_RESAMPLES, seed=seed).items():
            new[name].append(interval)
    print(f"\nold vs new 95% intervals, {AGREEMENT_IMAGES} images, {AGREEMENT_RESAMPLES} resamples; "
          f"MC SE = spread of the new endpoints over {seeds} seeds; z = (old - mean new) / (SE sqrt(1 + 1/seeds))")
    print(f"{'metric':>18} {'old low':>9} {'new low':>9} {'z':>6} {'old high':>9} {'new high':>9} {'z':>6}")
    worst = 0.0
    for name in METRICS:
        row, ends = [], np.array(new[name])
        for end in (0, 1):
            se = ends[:, end].std(ddof=1) * np.sqrt(1 + 1 / seeds)
            z = (old[name][end] - ends[:, end].mean()) / se
            worst = max(worst, abs(z))
            row += [f"{old[name][end]:>9.5f}", f"{ends[:, end].mean():>9.5f}", f"{z:>6.2f}"]
        print(f"{name:>18} " + " ".join(row))
    print(f"largest |z|: {worst:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    timings(args.repeat)
    agreement(args.seeds)


if __name__ == "__main__":
    main()
