"""Does the GPU recipe keep accuracy? Each detector's own recipe against its GPU recipe, on CPU, across seeds.

    python benchmarks/batch_scaling.py --data-root ../shared/data --train-limit 10000 --threads 1
    python benchmarks/batch_scaling.py --data-root ../shared/data --gpu-batch-sizes 512,1024   # candidates

A suite with ``recipe_profile: gpu`` trains every network at its GPU batch size (1,024 unless the detector says
otherwise) with the learning rate scaled by the optimizer's rule (``bench.recipe.LR_SCALING``: square root for
AdamW, linear for SGD). ``--gpu-batch-sizes`` tries other GPU batches (the same rule) to choose a detector's
``gpu_batch_size`` on validation. This trains each detector with its own recipe and with each GPU recipe on a CIFAKE
training subset (deduplicated as the ``cifake-cpu`` suite does; 10% held out), one run per seed, and prints the
balanced accuracy on that held-out validation split of the epoch each run kept: the mean and the standard deviation
across seeds per recipe, and whether each GPU recipe's mean lies within the larger of its and the default's seed
spreads of the default's mean. No test image is read. Not a test: it prints its figures; ``--out`` keeps them.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding cifake.zip")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "bench")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--detectors", default="cifake-cnn", help="comma-separated networks (default: cifake-cnn)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--train-limit", type=int, default=10000, help="training images per class")
    parser.add_argument("--gpu-batch-sizes", help="comma-separated GPU batches to try (default: the detector's)")
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
    print(f"{'detector':<16} {'recipe':<9} {'batch':>5} {'lr':>9} {'img/s':>7}  validation balanced accuracy per seed")
    rows = []
    for name in args.detectors.split(","):
        spec = DETECTORS.get(name)
        batches = [int(b) for b in args.gpu_batch_sizes.split(",")] if args.gpu_batch_sizes else [spec.gpu_batch_size]
        recipes = {"default": spec.recipe, **{f"gpu-{b}": spec.recipe.at_batch_size(b) for b in batches}}
        summary = {}
        for label, recipe in recipes.items():
            accuracies, rates = [], []
            for seed in seeds:
                seed_everything(seed)
                start = time.perf_counter()
                result = train_detector(build_detector(name), images, labels, recipe, seed, device, progress=False)
                rates.append(result.n_train * recipe.epochs / (time.perf_counter() - start))
                accuracies.append(result.val["balanced_accuracy"])
            summary[label] = {"recipe": recipe.model_dump(mode="json"), "val_balanced_accuracy": accuracies,
                              "mean": statistics.mean(accuracies), "std": statistics.stdev(accuracies),
                              "images_per_second": statistics.median(rates)}
            print(f"{name:<16} {label:<9} {recipe.batch_size:>5} {recipe.lr:>9.2e} {statistics.median(rates):>7.0f}"
                  f"  {' '.join(f'{a:.4f}' for a in accuracies)}  mean {summary[label]['mean']:.4f} "
                  f"std {summary[label]['std']:.4f}", flush=True)
        default = summary["default"]
        for label in list(recipes)[1:]:
            gap = summary[label]["mean"] - default["mean"]
            spread = max(summary[label]["std"], default["std"])
            summary[label] |= {"gap": gap, "spread": spread, "within_spread": abs(gap) <= spread}
            print(f"{name:<16} {label} - default {gap:+.4f}; larger seed spread {spread:.4f}: "
                  f"{'within' if abs(gap) <= spread else 'OUTSIDE'} the spread", flush=True)
        rows.append({"detector": name, "recipes": summary})
    if args.out:
        report = {"hardware": hardware(str(device)), "versions": versions(), "git": git_commit(),
                  "command": "python benchmarks/batch_scaling.py " + " ".join(
                      f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, "")),
                  "train_images": int(len(images)), "seeds": seeds, "detectors": rows}
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
