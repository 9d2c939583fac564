"""Coverage of the shipped interval, and false-positive rate and power of the shipped paired test, by simulation.

Each replicate draws a test set (``images`` reals and as many fakes) and detectors trained with ``seeds`` seeds.
A detector's scores are binormal with unequal variances (fakes spread 1.5 times as much as reals, the usual
shape of a ROC curve): per image, noise shared by every detector (how hard the image is), noise of the detector
(shared by its seeds) and noise of the seed, plus the seed's shift of the fakes. The shift makes the seed's
population AUC ``auc + seed_sd * z`` (z standard normal per seed), so the true mean over seeds is ``auc``; each
seed's threshold sits where it calls both classes equally well. Then:

- coverage: the share of replicates whose 95% interval of the mean over seeds (as
  :func:`bench.statistics.seed_bootstrap` makes it for the leaderboards) holds the true mean over seeds of AUC and
  of balanced accuracy;
- false-positive rate: detectors A and B alike (same AUC and seed spread, independent seeds, paired by seed number
  as the leaderboards pair them), the share of replicates where the paired test of
  :func:`bench.statistics.paired_bootstrap` calls them apart: per metric at p < 0.05, and as a verdict (AUC or
  balanced accuracy significant after Holm's adjustment over the two, as :func:`bench.compare.compare_detectors`
  adjusts a table);
- power: the same for B worse than A by ``SHIFT`` in true AUC.

Each replicate scores the three detectors on one set of bootstrap draws and calls the building blocks of those two
functions (``tests/test_coverage.py`` checks that they give the functions' results).

    python benchmarks/coverage.py [--replicates 200] [--resamples 100] [--images 200,2000] [--seeds 3,5]
        [--seed-sd 0,0.02,0.04] [--jobs 1] [--rng-seed 0]

About 5 minutes with the defaults and ``--jobs 2`` on a quiet 2-core machine. The leaderboards draw 1,000
resamples; fewer here only make the bootstrap variance noisier, which the intervals allow for (its degrees of
freedom), so coverage at 1,000 is at least as good.
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import product

import numpy as np
from scipy.stats import norm

from bench.statistics import (
    Run,
    holm,
    image_resamples,
    seed_difference_test,
    seed_mean_interval,
    seed_values,
    shared_image_variance,
)

AUC = 0.80  # true mean AUC over seeds of detector A
FAKE_SPREAD = 1.5  # standard deviation of the fakes' scores relative to the reals'
SHARED, DETECTOR, SEED = 0.3, 0.4, 0.3  # shares of the per-image score variance: all detectors, one detector, a seed
SHIFT = 0.03  # how much worse in true AUC detector B is when measuring power
LEVEL = 0.95
HEADLINE = ("roc_auc", "balanced_accuracy")


def _shift(auc: np.ndarray) -> np.ndarray:
    """The fakes' mean shift that gives binormal scores the population AUC ``auc``."""
    return np.sqrt(1 + FAKE_SPREAD**2) * norm.ppf(auc)


def _balanced_accuracy(auc: np.ndarray) -> np.ndarray:
    """The population balanced accuracy at the threshold mu / (1 + spread), which gets both classes equally right."""
    return norm.cdf(_shift(auc) / (1 + FAKE_SPREAD))


def truth(auc: float, seed_sd: float) -> dict[str, float]:
    """The true mean over seeds of each headline metric (Gauss-Hermite quadrature over the seed's z)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    aucs, weights = _clipped(auc + seed_sd * nodes), weights / weights.sum()
    return {"roc_auc": float((aucs * weights).sum()), "balanced_accuracy": float((_balanced_accuracy(aucs) * weights)
                                                                                 .sum())}


def _clipped(auc: np.ndarray) -> np.ndarray:
    """Per-seed AUCs kept inside (0, 1) (a draw beyond 0.01 or 0.99 is more than 4.5 seed sds out at most)."""
    return np.clip(auc, 0.01, 0.99)


def detector(rng: np.random.Generator, labels: np.ndarray, shared: np.ndarray, seeds: int, auc: float,
             seed_sd: float) -> list[Run]:
    """One detector's runs (one per seed) on the test images ``labels`` with the image noise ``shared``."""
    own = rng.standard_normal(len(labels))
    runs = []
    for z in rng.standard_normal(seeds):
        mu = float(_shift(_clipped(auc + seed_sd * z)))
        noise = math.sqrt(SHARED) * shared + math.sqrt(DETECTOR) * own + math.sqrt(SEED) * rng.standard_normal(
            len(labels))
        scores = np.where(labels == 1, FAKE_SPREAD * noise + mu, noise).astype(np.float32)
        runs.append((labels, scores, mu / (1 + FAKE_SPREAD)))
    return runs


@dataclass(frozen=True)
class Point:
    """One point of the grid."""

    seeds: int
    images: int  # per class
    seed_sd: float


def replicate_tests(rng: np.random.Generator, labels: np.ndarray, point: Point, resamples: int,
                    seed: int) -> tuple[dict[str, dict], list[dict[str, dict]]]:
    """One replicate: detector A's interval per headline metric, as :func:`bench.statistics.seed_bootstrap` makes it,
    and A's paired tests against an alike and a worse detector, as :func:`bench.statistics.paired_bootstrap` makes
    them (seeds paired), from one set of bootstrap draws shared by the three (the two functions' building blocks,
    to score each run once)."""
    shared = rng.standard_normal(len(labels))
    groups = [detector(rng, labels, shared, point.seeds, auc, point.seed_sd) for auc in (AUC, AUC, AUC - SHIFT)]
    (drawn_a, *drawn), df = image_resamples(groups, resamples, seed), resamples - 1.0
    a, *others = (seed_values(group) for group in groups)
    cell = {name: seed_mean_interval(a[name], shared_image_variance(drawn_a[name], a[name]), LEVEL, df)
            for name in HEADLINE}
    tests = [{name: seed_difference_test(a[name], b[name], shared_image_variance(
        drawn_a[name] - drawn_b[name], a[name] - b[name]), True, LEVEL, df) for name in HEADLINE}
        for b, drawn_b in zip(others, drawn, strict=True)]
    return cell, tests


def simulate(point: Point, replicates: int, resamples: int, rng_seed: int = 0) -> dict[str, float]:
    """Coverage, false-positive rate and power at one grid point (shares of ``replicates``), and seconds taken."""
    rng = np.random.default_rng([rng_seed, point.seeds, point.images, round(point.seed_sd * 1e4)])
    labels = np.r_[np.zeros(point.images, int), np.ones(point.images, int)]
    true = truth(AUC, point.seed_sd)
    alpha = 1 - LEVEL
    counts = dict.fromkeys(["cover_auc", "cover_bal", "fp_auc", "fp_bal", "fp_verdict", "power_auc", "power_verdict",
                            "width_auc"], 0.0)
    start = time.perf_counter()
    for replicate in range(replicates):
        cell, tests = replicate_tests(rng, labels, point, resamples, seed=replicate)
        for name, key in (("roc_auc", "cover_auc"), ("balanced_accuracy", "cover_bal")):
            low, high = cell[name]["ci"]
            counts[key] += low <= true[name] <= high
        counts["width_auc"] += cell["roc_auc"]["ci"][1] - cell["roc_auc"]["ci"][0]
        for tested, prefix in zip(tests, ("fp", "power"), strict=True):
            p = [tested[name]["p_value"] for name in HEADLINE]
            counts[f"{prefix}_auc"] += p[0] < alpha
            if prefix == "fp":
                counts["fp_bal"] += p[1] < alpha
            counts[f"{prefix}_verdict"] += bool((holm(p) < alpha).any())
    return {key: value / replicates for key, value in counts.items()} | {"seconds": time.perf_counter() - start}


def _run(args: tuple[Point, int, int, int]) -> tuple[Point, dict[str, float]]:
    point, replicates, resamples, rng_seed = args
    return point, simulate(point, replicates, resamples, rng_seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--images", default="200,2000", help="test images per class, comma-separated")
    parser.add_argument("--seeds", default="3,5")
    parser.add_argument("--seed-sd", default="0,0.02,0.04", help="standard deviation of the per-seed AUC")
    parser.add_argument("--jobs", type=int, default=1, help="processes")
    parser.add_argument("--rng-seed", type=int, default=0, help="another value draws other replicates")
    args = parser.parse_args()
    grid = [Point(s, n, sd) for s, n, sd in product(
        [int(v) for v in args.seeds.split(",")], [int(v) for v in args.images.split(",")],
        [float(v) for v in args.seed_sd.split(",")])]
    work = [(point, args.replicates, args.resamples, args.rng_seed) for point in grid]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_run, work)) if args.jobs > 1 else [_run(w) for w in work]
    print(f"{args.replicates} replicates per row, {args.resamples} resamples, true mean AUC {AUC}, power at a true "
          f"AUC {SHIFT} lower; 95% intervals and 5% tests. Targets: coverage >= 93%, false positives <= 6%.\n")
    print("| seeds | images per class | seed sd | coverage AUC | coverage bal acc | mean AUC interval width | "
          "false pos. AUC | false pos. bal acc | false verdict | power AUC | power verdict | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for point, r in results:
        print(f"| {point.seeds} | {point.images:,} | {point.seed_sd:g} | {r['cover_auc']:.1%} | {r['cover_bal']:.1%} | "
              f"{r['width_auc']:.3f} | {r['fp_auc']:.1%} | {r['fp_bal']:.1%} | {r['fp_verdict']:.1%} | "
              f"{r['power_auc']:.1%} | {r['power_verdict']:.1%} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
