"""Provenance stamped on every record: command, versions, git commit, hardware, and the code of detectors from
outside bench."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

from pydantic import BaseModel, ConfigDict

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


COMMIT_VARIABLE = "BENCH_GIT_COMMIT"
"""Names the commit of a copy of the source tree made without its history (a device machine's copy, whose own git
state is not this commit's); whether that copy's code was changed is then not known (``dirty`` None)."""


@cache

def git_commit() -> dict[str, object]:
    """The commit of the bench source tree and whether its code had uncommitted changes (None outside git), or the
    commit that ``BENCH_GIT_COMMIT`` names."""
    if os.environ.get(COMMIT_VARIABLE):
        return {"commit": os.environ[COMMIT_VARIABLE], "dirty": None}
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


class DetectorCode(BaseModel):
    """The code of a detector from outside bench: the distribution that installs it and its version (None for a
    module no installed distribution provides, e.g. one found through PYTHONPATH) and the sha256 of its source."""

    model_config = ConfigDict(frozen=True)

    distribution: str | None
    version: str | None
    sha256: str


BUILTIN = __name__.partition(".")[0]  # the top-level package of bench itself; its detectors are named by the commit


@cache
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()  # scans every installed distribution once (about a second)


def _source_files(module: object) -> list[tuple[str, Path]]:
    """(relative name, path) of every Python source file of a top-level package, or the one file of a module."""
    folders = getattr(module, "__path__", None)
    if folders is not None:
        return sorted((f"{i}/{f.relative_to(folder).as_posix()}", f) for i, folder in enumerate(map(Path, folders))
                      for f in folder.rglob("*.py"))
    file = getattr(module, "__file__", None)
    return [(Path(file).name, Path(file))] if file else []


@cache
def code_identity(module: str) -> DetectorCode | None:
    """What identifies the code of a detector whose factory is defined in ``module``: None for one shipped in bench,
    else its distribution, version and the sha256 of the source files of its top-level package (every ``.py`` file
    in it, so helper modules count too; installed or editable alike). Computed once per process, when the code that
    runs was imported, so an edit made later is seen by the next run, not by this one."""
    top = module.partition(".")[0]
    if top == BUILTIN:
        return None
    files = _source_files(sys.modules.get(top) or importlib.import_module(top))
    if not files:
        raise ValueError(f"detector code in module {module!r} has no source file to identify it by: define the "
                         "detector in a .py file (a plugin package or module)")
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    distribution = next(iter(_distributions().get(top, [])), None)
    return DetectorCode(distribution=distribution, version=version(distribution) if distribution else None,
                        sha256=digest.hexdigest())


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
