"""How far two runs of the same suite on the same hardware differ: the largest absolute difference of each
metric over the cells both runs measured (same detector, training set, test source, perturbation and seed).

    bench run --suite smoke --device cuda --results A --data-dir CACHE_A
    bench run --suite smoke --device cuda --results B --data-dir CACHE_B   # a second cache: retrained
    python benchmarks/repeatability.py A B [--out FILE.json]

Each run must train its own checkpoints (separate ``--data-dir``), or the second run merely reloads the first's.
Not a test: it prints its figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.records import load_records, unique_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    first, second = (unique_cells(load_records(folder)) for folder in (args.first, args.second))
    shared = sorted(set(first) & set(second))
    if not shared:
        raise SystemExit(f"error: {args.first} and {args.second} have no cell in common")
    largest: dict[str, tuple[float, str]] = {}
    identical = 0
    for cell in shared:
        a, b = first[cell].metrics, second[cell].metrics
        same = True
        for metric in sorted(set(a) & set(b)):
            difference = abs(a[metric].value - b[metric].value)
            same &= difference == 0
            if difference >= largest.get(metric, (-1.0, ""))[0]:
                largest[metric] = (difference, cell.describe())
        identical += same
    print(f"{len(shared)} cells in both runs, {identical} with every metric bit-identical")
    for metric, (difference, where) in largest.items():
        print(f"  {metric:<20} largest difference {difference:.4f}  ({where})")
    if args.out:
        args.out.write_text(json.dumps({"cells": len(shared), "identical": identical,
                                        "largest": {m: {"difference": d, "cell": w} for m, (d, w) in largest.items()}},
                                       indent=1))


if __name__ == "__main__":
    main()
