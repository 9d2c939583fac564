"""Time the commands a new user types first: `bench --help`, `bench list detectors`, `bench run --help`.

Each runs as a subprocess, as a user would start it; prints the median wall-clock seconds of each.

    python benchmarks/cli_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["list", "detectors"], ["run", "--help"])


def bench_executable() -> str:
    """The `bench` script installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "bench"
    found = str(beside) if beside.is_file() else shutil.which("bench")
    if found is None:
        raise SystemExit("no `bench` command found: pip install -e . first")
    return found


def seconds(command: list[str]) -> float:
    """Wall-clock seconds of one run of ``command``; a failing command stops the benchmark."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (after one warm-up run)")
    repeat = parser.parse_args().repeat
    executable = bench_executable()
    for args in COMMANDS:
        command = [executable, *args]
        seconds(command)  # warm-up: fills the file cache and __pycache__
        median = statistics.median(seconds(command) for _ in range(repeat))
        print(f"{median:6.2f} s  bench {' '.join(args)}")


if __name__ == "__main__":
    main()
