"""No 32x32 in the core: a 64x64 source is scored by a detector at 32 (images resized) and one at 64, a 64x64
folder imports at its own size, and every record says how images reached the detector."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch.nn.functional as F
from PIL import Image

from bench.detector import DETECTORS, DetectorSpec
from bench.importers import import_folder
from bench.plan import PlanError
from bench.runner import Runner
from bench.sources import SourceStore
from bench.suite import load_suite


def pooled_cnn(num_classes: int = 1):
    """A small CNN with global pooling, for 64x64 input."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(32, num_classes))


@pytest.fixture(scope="module", autouse=True)
def detector_at_64():
    """A detector at 64x64, registered for this module only."""
    DETECTORS.register("pooled-64", DetectorSpec("pooled-64", pooled_cnn, input_size=64))
    yield
    DETECTORS.unregister("pooled-64")


def _upsampled(images: np.ndarray) -> np.ndarray:
    import torch

    big = F.interpolate(torch.from_numpy(np.array(images)).float(), scale_factor=2, mode="bilinear")
    return big.round().clamp(0, 255).to(torch.uint8).numpy()


SUITE = """
name: sizes
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  real-64: {importer: npz, path: real-64.npz, label: real}
  sd14-64: {importer: npz, path: sd14-64.npz, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 300}]
test: {real: real-64, fake: [sd14-64]}
detectors: [{name: lenet}, {name: pooled-64}]
recipe: {epochs: 1}
bootstrap: 20
"""


def test_a_64_pixel_source_is_scored_by_detectors_at_32_and_at_64(cifake, cifake_cache, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for name, source in (("real-64", "cifake-real-test"), ("sd14-64", "cifake-sd14-test")):
        np.savez(root / f"{name}.npz", images=_upsampled(cifake.load(source).images[:150]))
    (tmp_path / "sizes.yaml").write_text(textwrap.dedent(SUITE))
    suite = load_suite(tmp_path / "sizes.yaml")

    summary = Runner(cifake_cache, tmp_path / "results", root, device="cpu", progress=False).run(suite)
    by_detector = {r.detector: r for r in summary.records}
    assert by_detector["lenet"].input.model_dump() == {
        "size": 32, "adapted": {"real": {"from": 64, "to": 32, "method": "resize"},
                                "fake": {"from": 64, "to": 32, "method": "resize"}}}
    assert by_detector["pooled-64"].input.model_dump() == {"size": 64, "adapted": {"real": None, "fake": None}}
    for record in summary.records:
        assert record.n_real == record.n_fake == 150
        assert record.metrics["roc_auc"].value > 0.5  # it learned something that survives the resize

    cropped = suite.model_copy(update={"input_size": "center-crop"})
    runner = Runner(cifake_cache, tmp_path / "cropped", root, device="cpu", progress=False)
    keys = {c.key for c in runner.plan(cropped.with_overrides(detectors="lenet"))[0].cells}
    assert keys.isdisjoint(r.key for r in summary.records)  # how images are adapted is part of the key
    with pytest.raises(PlanError, match="cannot centre-crop 32x32"):  # pooled-64's 32x32 training images
        runner.plan(cropped)


def test_a_folder_of_64_pixel_images_imports_at_its_size(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    manifest = import_folder(SourceStore(tmp_path / "cache"), folder, "big", "fake")
    assert manifest.shape == (3, 64, 64) and manifest.count == 3
