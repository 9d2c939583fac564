"""Training and scoring throughput of every registered detector, as the dry-run estimate measures it.

Each detector is timed by :func:`bench.estimate.throughput` (a few training steps and forward passes on random
32x32 images, the fastest of several) with a fixed number of torch threads, so the figures of one run can be
compared with each other; a loaded machine lowers them all. Prints one Markdown row per detector, with its
ratio to cifake-cnn's training speed measured in the same run.

    python benchmarks/throughput.py [--threads 1] [--device cpu] [--detectors lenet,cifake-cnn,npr]
"""

from __future__ import annotations

import argparse

import torch

from bench.detector import DETECTORS
from bench.estimate import throughput

REFERENCE = "cifake-cnn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size the steps are scaled to")
    parser.add_argument("--detectors", default="", help="comma-separated names (default: every registered one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.detectors.split(",") if n] or DETECTORS.names()
    names = [REFERENCE, *[n for n in names if n != REFERENCE]]
    rates = {name: throughput(name, 32, args.batch_size, args.device) for name in names}
    reference = rates[REFERENCE].train
    print(f"{args.device}, {args.threads} torch thread(s), batch {args.batch_size}, 32x32 images\n")
    print("| detector | training images/s | scoring images/s | training speed / cifake-cnn's |")
    print("|---|---|---|---|")
    for name, rate in sorted(rates.items(), key=lambda item: -item[1].train):
        print(f"| {name} | {rate.train:,.0f} | {rate.score:,.0f} | {rate.train / reference:.2f} |")


if __name__ == "__main__":
    main()
