"""Shared fixtures: the real CIFAKE and ddpm-cifar10 data beside the project (../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.importers import import_cifake
from bench.sources import SourceStore

BUILTIN_DETECTORS = [  # every detector shipped in detectors/, sorted as `bench list detectors` lists them
    "airbench-cnn", "alexnet", "cifake-cnn", "cnnspot", "dct-cnn", "dct-linear", "efficientnet-b0", "freqnet", "lenet",
    "local-residual", "npr", "patch-classifier", "random-forest", "resnet50", "spectrum-lr", "vgg-cifake", "vit-tiny",
]
DATA_ROOT = Path(os.environ.get("BENCH_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "cifake.zip").is_file():
        pytest.fail(f"the tests need the real data: {DATA_ROOT}/cifake.zip not found (set BENCH_TEST_DATA)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def cifake_dir(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the four CIFAKE sources, imported once per test session."""
    data_dir = tmp_path_factory.mktemp("cifake-cache")
    store = SourceStore(data_dir)
    for split in ("train", "test"):
        for label in ("real", "fake"):
            import_cifake(store, data_root / "cifake.zip", split, label)
    return data_dir


@pytest.fixture(scope="session")
def cifake(cifake_dir: Path) -> SourceStore:
    return SourceStore(cifake_dir)


@pytest.fixture(scope="session")
def trained_cnn(cifake: SourceStore):
    """The CIFAKE-paper CNN trained for 3 epochs on 3,000 real + 3,000 fake CIFAKE training images."""
    import numpy as np
    import torch

    from bench.detector import build_detector
    from bench.recipe import Recipe
    from bench.training import seed_everything, train_detector

    real = cifake.load("cifake-real-train").images[:3000]
    fake = cifake.load("cifake-sd14-train").images[:3000]
    seed_everything(0)
    detector = build_detector("cifake-cnn")
    result = train_detector(detector, np.concatenate([real, fake]), np.r_[np.zeros(3000, int), np.ones(3000, int)],
                            Recipe(epochs=3), seed=0, device=torch.device("cpu"), progress=False)
    return detector.eval(), result.threshold
