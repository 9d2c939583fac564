"""Training speed per detector on this device: images/s, seconds per epoch and time-to-accuracy on CIFAKE.

    python benchmarks/train_speed.py --data-root ../shared/data --device cuda --epochs 3 --full airbench-cnn

Each detector trains with its registered recipe, or with ``--profile gpu`` its GPU recipe (``--epochs`` caps the
epochs of every detector not named in ``--full``) on all of CIFAKE train, deduplicated as the ``cifake-cpu`` suite
does (10% held out for validation), seed 0. After every epoch the benchmark pauses the clock and measures accuracy
on the whole CIFAKE test split at that epoch's validation threshold: that test accuracy is only reported, never
used to choose anything. The kept epoch and the threshold are chosen on validation, as in every run. Time-to-
accuracy is the training time (validation included, test evaluation excluded) until test accuracy first reached
90%, 95%, 97% and 98%. Not a test: it prints its figures, and ``--out`` keeps them as JSON.
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
from bench.metrics import point_metrics
from bench.prepare import Preparer
from bench.provenance import describe_hardware, git_commit, hardware, versions
from bench.recipe import RecipeProfile
from bench.suite import load_suite
from bench.training import pick_device, predict_logits, seed_everything, train_detector

LEVELS = (0.90, 0.95, 0.97, 0.98)
TARGET = (0.98, 60.0)  # test accuracy of the epoch kept on validation, within this many seconds of training


def measure(name: str, images: np.ndarray, labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
            device: torch.device, epochs: int | None, seed: int, profile: RecipeProfile = "default") -> dict:
    """Train ``name`` once with its recipe under ``profile``, recording time and test accuracy after every epoch."""
    recipe = DETECTORS.get(name).recipe_for(profile)
    recipe = recipe if epochs is None else recipe.updated(epochs=min(epochs, recipe.epochs))
    seed_everything(seed)
    detector = build_detector(name)
    test_device = test.to(device)
    epochs_seen: list[dict] = []

    def on_epoch(epoch: int, threshold: float, seconds: float) -> None:
        logits = predict_logits(detector, test_device, device)
        scores = point_metrics(test_labels, logits, threshold)
        epochs_seen.append({"epoch": epoch, "seconds": seconds, "test_accuracy": scores["accuracy"]})
        detector.train()

    result = train_detector(detector, images, labels, recipe, seed, device, progress=False, on_epoch=on_epoch)
    for row, history in zip(epochs_seen, result.history, strict=True):
        row["val_balanced_accuracy"] = history["val_balanced_accuracy"]
    times = [row["seconds"] for row in epochs_seen]
    per_epoch = np.diff([0.0, *times])
    steady = statistics.median(per_epoch[1:]) if len(per_epoch) > 1 else per_epoch[0]
    kept = epochs_seen[result.selected_epoch - 1]
    reached = {f"{level:.2f}": next((r["seconds"] for r in epochs_seen if r["test_accuracy"] >= level), None)
               for level in LEVELS}
    return {
        "detector": name, "recipe": recipe.model_dump(mode="json"), "n_train": result.n_train,
        "seconds": result.seconds, "first_epoch_seconds": float(per_epoch[0]), "seconds_per_epoch": float(steady),
        "images_per_second": result.n_train / steady, "selected_epoch": result.selected_epoch,
        "val_balanced_accuracy": result.val["balanced_accuracy"], "test_accuracy": kept["test_accuracy"],
        "test_accuracy_seconds": kept["seconds"], "seconds_to_test_accuracy": reached, "epochs": epochs_seen,
        "target_met": kept["test_accuracy"] >= TARGET[0] and kept["seconds"] <= TARGET[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding cifake.zip")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "bench")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--detectors", help="comma-separated (default: every differentiable detector)")
    parser.add_argument("--epochs", type=int, help="cap on epochs for detectors not named in --full")
    parser.add_argument("--full", default="", help="comma-separated detectors trained with their full recipe")
    parser.add_argument("--train-limit", type=int, help="training images per class (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", choices=["default", "gpu"], default="default",
                        help="each detector's own recipe, or its GPU recipe (batch and learning rate scaled)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    device = pick_device(args.device)
    suite = load_suite("cifake-cpu")
    if args.train_limit:
        suite = suite.model_copy(update={"train": [t.model_copy(update={"limit": args.train_limit})
                                                   for t in suite.train]})
    data = Preparer(args.data_dir, args.data_root, str(device), progress=False).prepare(suite)
    real, fake = data.train[suite.train[0].name]
    images = np.concatenate([real.images, fake.images])
    labels = np.r_[np.zeros(real.count, int), np.ones(fake.count, int)]
    test_real, test_fake = data.test["cifake-real-test"], data.test["cifake-sd14-test"]
    test = torch.from_numpy(np.concatenate([test_real.images, test_fake.images]))
    test_labels = np.r_[np.zeros(test_real.count, int), np.ones(test_fake.count, int)]
    names = args.detectors.split(",") if args.detectors else [n for n in DETECTORS.names()
                                                             if DETECTORS.get(n).differentiable]
    full = set(filter(None, args.full.split(",")))
    where = describe_hardware(hardware(str(device)))
    print(f"{len(images)} training images (10% held out), {len(test)} test images; {where}")
    print(f"{'detector':<16} {'epochs':>6} {'img/s':>8} {'s/epoch':>8} {'1st ep s':>8} {'kept':>5} {'val bal':>7} "
          f"{'test acc':>8} {'train s':>8}  seconds to test accuracy " + " / ".join(f"{x:.0%}" for x in LEVELS))
    rows = []
    for name in names:
        start = time.perf_counter()
        row = measure(name, images, labels, test, test_labels, device, None if name in full else args.epochs,
                      args.seed, args.profile)
        row["wall_seconds"] = time.perf_counter() - start
        rows.append(row)
        reached = " / ".join("-" if s is None else f"{s:.1f}" for s in row["seconds_to_test_accuracy"].values())
        print(f"{name:<16} {row['recipe']['epochs']:>6} {row['images_per_second']:>8.0f} "
              f"{row['seconds_per_epoch']:>8.2f} {row['first_epoch_seconds']:>8.2f} {row['selected_epoch']:>5} "
              f"{row['val_balanced_accuracy']:>7.4f} {row['test_accuracy']:>8.4f} {row['seconds']:>8.1f}  {reached}"
              f"{'  (target met: >= 98.0% within 60 s)' if row['target_met'] else ''}", flush=True)
    if args.out:
        report = {"hardware": hardware(str(device)), "versions": versions(), "git": git_commit(),
                  "command": "python benchmarks/train_speed.py " + " ".join(f"--{k.replace('_', '-')} {v}"
                                                                           for k, v in vars(args).items()
                                                                           if v not in (None, "")),
                  "train_images": int(len(images)), "test_images": int(len(test)), "seed": args.seed,
                  "target": {"test_accuracy": TARGET[0], "seconds": TARGET[1]}, "detectors": rows}
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
