"""Provenance stamped on every record: command, versions, git commit and hardware."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench import __version__

CODE_PATHS = (":(top)bench", ":(top)detectors", ":(top)generators", ":(top)suites", ":(top)pyproject.toml")
PACKAGES = ("torch", "torchvision", "timm", "numpy", "scikit-learn", "pillow", "safetensors", "pandas",
            "torchattacks", "captum", "diffusers", "transformers")


def content_key(obj: object) -> str:
    """sha256 of an object's canonical JSON: the key of anything cached or recorded."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@cache
def versions() -> dict[str, str]:
    """Installed versions of Python, bench and the packages that shape results."""
    found = {"python": platform.python_version(), "bench": __version__}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


@cache
def git_commit() -> dict[str, object]:
    """The commit of the bench source tree and whether its code had uncommitted changes (None outside git)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(  # changes to the code, not to results/ or docs
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def hardware(device: str = "cpu") -> dict[str, object]:
    """The machine a result was measured on."""
    import torch  # imported here: content_key serves modules that must load without torch

    info: dict[str, object] = {
        "device": device,
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def describe_hardware(info: dict) -> str:
    """One line, e.g. ``cpu: AMD EPYC 7B13 (2 cores)`` or ``cuda: NVIDIA H100``."""
    if "gpu" in info:
        return f"{info['device']}: {info['gpu']}"
    return f"{info['device']}: {info['cpu']} ({info['cpu_cores']} cores)"


def summarise_provenance(records: list[dict]) -> dict[str, list[str]]:
    """What produced ``records``, for leaderboard headers: the distinct values of each provenance field, sorted.

    Keys: ``trained_on`` and ``scored_on`` (hardware), ``commands``, ``commits`` (with " (dirty)" where the
    code had uncommitted changes), ``versions`` (torch, timm, scikit-learn), ``seeds`` and ``bootstrap``
    (resamples per interval).
    """
    stamps = [r["provenance"] for r in records]
    return {
        "trained_on": sorted({describe_hardware(r["training"]["trained_on"]) for r in records}),
        "scored_on": sorted({describe_hardware(p["hardware"]) for p in stamps}),
        "commands": sorted({p["command"] for p in stamps}),
        "commits": sorted({f"{p['git']['commit'] or 'unknown'}{' (dirty)' if p['git']['dirty'] else ''}"
                           for p in stamps}),
        "versions": sorted({", ".join(f"{name} {p['versions'][name]}" for name in ("torch", "timm", "scikit-learn"))
                            for p in stamps}),
        "seeds": [str(s) for s in sorted({r["seed"] for r in records})],
        "bootstrap": [str(n) for n in sorted({r["bootstrap"]["resamples"] for r in records})],
    }


def command_line() -> str:
    """The command that is running, as a user would type it (``bench ...`` for the CLI)."""
    if Path(sys.argv[0]).name in ("bench", "__main__.py"):
        return shlex.join(["bench", *sys.argv[1:]])
    return shlex.join(sys.argv)


def stamp(seed: int, device: str, git: dict | None = None) -> dict[str, object]:
    """Everything needed to say how a number was produced; ``git`` is the commit the run started with
    (a worker process given none reads its own)."""
    return {
        "command": command_line(),
        "seed": seed,
        "versions": versions(),
        "git": git or git_commit(),
        "hardware": hardware(device),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
