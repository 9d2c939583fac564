"""Wall time of one suite through each executor, and the ratio to serial, measured in one run.

    python benchmarks/executors.py --data-root ../shared/data                      # smoke: serial, local x2, ray
    python benchmarks/executors.py --suite cross-generator --parallel 4 --executors serial,local --device cuda

The suite's sources are imported (or generated) once into a scratch cache; each executor then starts from a
copy of that cache without checkpoints, so every executor trains and scores the same jobs from scratch.
Not a test: it prints its figures.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.executors import ProcessExecutor, RayExecutor, SerialExecutor
from bench.prepare import Preparer
from bench.provenance import describe_hardware, hardware
from bench.runner import Runner
from bench.suite import load_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, help="cache to start from (default: a fresh scratch cache)")
    parser.add_argument("--parallel", type=int, default=2, help="jobs at once for the parallel executors")
    parser.add_argument("--executors", default="serial,local,ray", help="comma-separated: serial, local, ray")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    suite = load_suite(args.suite)
    scratch = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    base = scratch / "base"
    if args.data_dir:
        shutil.copytree(args.data_dir / "sources", base / "sources")
    start = time.perf_counter()
    Preparer(base, args.data_root, args.device).prepare(suite)
    print(f"{suite.name}: sources ready in {time.perf_counter() - start:.0f} s on "
          f"{describe_hardware(hardware(args.device if args.device != 'auto' else 'cpu'))}")
    gpus = 1 / args.parallel if args.device.startswith("cuda") else 0
    executors = {
        "serial": SerialExecutor(),
        "local": ProcessExecutor(args.parallel),
        "ray": RayExecutor(parallel=args.parallel, gpus_per_job=gpus),
    }
    seconds = {}
    try:
        for name in args.executors.split(","):
            cache = scratch / f"cache-{name}"
            shutil.copytree(base / "sources", cache / "sources")
            runner = Runner(cache, scratch / f"results-{name}", args.data_root, args.device, progress=False,
                            executor=executors[name])
            start = time.perf_counter()
            summary = runner.run(suite)
            seconds[name] = time.perf_counter() - start
            label = name if name == "serial" else f"{name} --parallel {args.parallel}"
            ratio = f", {seconds[name] / seconds['serial']:.2f}x serial" if "serial" in seconds else ""
            print(f"{label:<20} {seconds[name]:8.1f} s for {len(summary.computed)} cells{ratio}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
