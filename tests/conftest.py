"""Shared fixtures: the real CIFAKE and ddpm-cifar10 data beside the project (../shared/data), a detector trained
on it once per test session, and each pytest-xdist worker's share of the CPU cores."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bench.detector import build_detector
from bench.importers import import_cifake
from bench.recipe import Recipe
from bench.sources import SourceStore
from bench.training import seed_everything, train_detector

BUILTIN_DETECTORS = [  # every detector shipped in detectors/, sorted as `bench list detectors` lists them
    "airbench-cnn", "alexnet", "cifake-cnn", "cnnspot", "dct-cnn", "dct-linear", "efficientnet-b0", "freqnet", "lenet",
    "local-residual", "npr", "patch-classifier", "random-forest", "resnet50", "spectrum-lr", "vgg-cifake", "vit-tiny",
]
DATA_ROOT = Path(os.environ.get("BENCH_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker trains on its share of the cores, as `bench run --parallel` splits them
    among its workers: two workers that each spread torch over every core only make them wait for each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder every pytest-xdist worker of this session sees (the session's own folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def made_once(path: Path, make: Callable[[Path], None]) -> Path:
    """``path``, made by ``make`` (under a temporary name, then renamed) by the first worker that needs it; the
    others wait for it under a file lock and then read it."""
    with FileLock(f"{path}.lock"):
        if not path.exists():
            partial = path.with_name(f"{path.name}.partial")
            make(partial)
            partial.rename(path)
    return path


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "cifake.zip").is_file():
        pytest.fail(f"the tests need the real data: {DATA_ROOT}/cifake.zip not found (set BENCH_TEST_DATA)")
    return DATA_ROOT


def linked_sources(data_dir: Path, cache: Path) -> Path:
    """``cache``, a new data directory holding the sources of ``data_dir`` as links (not copies): what is cached
    there later (other sources, checkpoints) stays in it."""
    (cache / "sources").mkdir(parents=True)
    for source in (data_dir / "sources").iterdir():
        (cache / "sources" / source.name).symlink_to(source)
    return cache


@pytest.fixture(scope="session")
def cifake_dir(data_root: Path, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A data directory of this worker's own holding the four CIFAKE sources (as links): each imported once per
    test session, by the first worker that needs it. Workers take the sources in different orders, so that two
    workers that start at once import two sources side by side rather than wait for one."""
    parts = [(split, label) for split in ("train", "test") for label in ("real", "fake")]
    turn = int(worker_id[2:]) if worker_id.startswith("gw") else 0
    cache = tmp_path_factory.mktemp("cifake-cache")
    (cache / "sources").mkdir()
    for split, label in parts[turn % len(parts):] + parts[:turn % len(parts)]:
        def import_one(folder: Path, split: str = split, label: str = label) -> None:
            import_cifake(SourceStore(folder), data_root / "cifake.zip", split, label)

        for source in (made_once(shared_dir / f"cifake-{split}-{label}", import_one) / "sources").iterdir():
            (cache / "sources" / source.name).symlink_to(source)
    return cache


@pytest.fixture(scope="session")
def cifake(cifake_dir: Path) -> SourceStore:
    return SourceStore(cifake_dir)


@pytest.fixture
def cifake_cache(cifake_dir: Path, tmp_path: Path) -> Path:
    """A data directory of the test's own holding the session's CIFAKE sources (as links)."""
    return linked_sources(cifake_dir, tmp_path / "cache")


@pytest.fixture(scope="session")
def trained_cnn(cifake: SourceStore, shared_dir: Path) -> tuple[torch.nn.Module, float]:
    """The CIFAKE-paper CNN trained for 3 epochs on 3,000 real + 3,000 fake CIFAKE training images, and its
    decision threshold: trained once per test session, by the first worker that needs it."""

    def train(path: Path) -> None:
        real = cifake.load("cifake-real-train").images[:3000]
        fake = cifake.load("cifake-sd14-train").images[:3000]
        seed_everything(0)
        result = train_detector(build_detector("cifake-cnn"), np.concatenate([real, fake]),
                                np.r_[np.zeros(3000, int), np.ones(3000, int)], Recipe(epochs=3), seed=0,
                                device=torch.device("cpu"), progress=False)
        save_file(result.state, path, metadata={"threshold": repr(float(result.threshold))})

    path = made_once(shared_dir / "trained-cifake-cnn.safetensors", train)
    with safe_open(path, "pt") as weights:
        threshold = float(weights.metadata()["threshold"])
    detector = build_detector("cifake-cnn")
    detector.load_state(load_file(path))
    return detector.eval(), threshold
