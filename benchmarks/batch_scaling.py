"""Does the GPU recipe keep accuracy? Each detector's own recipe against its GPU recipe, on CPU, across seeds.

    python benchmarks/batch_scaling.py --data-root ../shared/data --train-limit 10000 --threads 1

A suite with ``recipe_profile: gpu`` trains every network at its GPU batch size (1,024 unless the detector says
otherwise) with the learning rate scaled by the optimizer's rule (``bench.recipe.LR_SCALING``: square root for
AdamW, linear for SGD). This trains each detector with both recipes on a CIFAKE training subset (deduplicated as
the ``cifake-cpu`` suite does; 10% held out), one run per seed, and prints the balanced accuracy on that held-out
validation split of the epoch each run kept: the mean and the standard deviation across seeds per recipe, and
whether the two means lie within the larger of the two spreads. No test image is read. Not a test: it prints its
figures, and ``--out`` keeps them as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.detector import DETECTORS, build_detector
from bench.prepare import Preparer
from bench.provenance import describe_hardware, git_commit, hardware, versions
from bench.suite import load_suite
from bench.training import pick_device, seed_everything, train_detector

PROFILES = ("default", "gpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding cifake.zip")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "bench")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--detectors", default="cifake-cnn", help="comma-separated networks (default: cifake-cnn)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--train-limit", type=int, default=10000, help="training images per class")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = pick_device(args.device)
    suite = load_suite("cifake-cpu")
    suite = suite.model_copy(update={"train": [t.model_copy(update={"limit": args.train_limit}) for t in suite.train]})
    real, fake = Preparer(args.data_dir, args.data_root, str(device), progress=False).prepare(suite).train[
        suite.train[0].name]
    images = np.concatenate([real.images, fake.images])
    labels = np.r_[np.zeros(real.count, int), np.ones(fake.count, int)]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{len(images)} training images (10% held out for validation); seeds {seeds}; "
          f"{describe_hardware(hardware(str(device)))}")
    print(f"{'detector':<16} {'recipe':<8} {'batch':>5} {'lr':>9} {'img/s':>7}  validation balanced accuracy per seed")
    rows = []
    for name in args.detectors.split(","):
        spec = DETECTORS.get(name)
        summary = {}
        for profile in PROFILES:
            recipe = spec.recipe_for(profile)
            accuracies, rates = [], []
            for seed in seeds:
                seed_everything(seed)
                start = time.perf_counter()
                result = train_detector(build_detector(name), images, labels, recipe, seed, device, progress=False)
                rates.append(result.n_train * recipe.epochs / (time.perf_counter() - start))
                accuracies.append(result.val["balanced_accuracy"])
            summary[profile] = {"recipe": recipe.model_dump(mode="json"), "val_balanced_accuracy": accuracies,
                                "mean": statistics.mean(accuracies), "std": statistics.stdev(accuracies),
                                "images_per_second": statistics.median(rates)}
            print(f"{name:<16} {profile:<8} {recipe.batch_size:>5} {recipe.lr:>9.2e} {statistics.median(rates):>7.0f}"
                  f"  {' '.join(f'{a:.4f}' for a in accuracies)}  mean {summary[profile]['mean']:.4f} "
                  f"std {summary[profile]['std']:.4f}", flush=True)
        gap = summary["gpu"]["mean"] - summary["default"]["mean"]
        spread = max(summary["gpu"]["std"], summary["default"]["std"])
        within = abs(gap) <= spread
        print(f"{name:<16} gpu - default {gap:+.4f}; larger seed spread {spread:.4f}: "
              f"{'within' if within else 'OUTSIDE'} the spread", flush=True)
        rows.append({"detector": name, "profiles": summary, "gap": gap, "spread": spread, "within_spread": within})
    if args.out:
        report = {"hardware": hardware(str(device)), "versions": versions(), "git": git_commit(),
                  "command": "python benchmarks/batch_scaling.py " + " ".join(
                      f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, "")),
                  "train_images": int(len(images)), "seeds": seeds, "detectors": rows}
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
