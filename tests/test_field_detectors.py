"""The field's detectors (NPR, FreqNet, local residual, patch classifier): their image transforms, learning on real
CIFAKE, and the harness's estimator, attacks, attributions and source attribution applied to each."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from bench.attribution import ATTRIBUTIONS, AttributionSettings
from bench.detector import DETECTORS, build_detector
from bench.detectors.freqnet import high_pass
from bench.detectors.local_residual import neighbour_median_residual
from bench.detectors.npr import npr_residual
from bench.estimate import throughput
from bench.perturbations import PERTURBATIONS
from bench.recipe import Recipe
from bench.training import predict_logits, seed_everything, train_detector

FIELD = ["npr", "freqnet", "local-residual", "patch-classifier"]
CPU = torch.device("cpu")
TRAIN, TEST = 1000, 500  # CIFAKE images per class


def test_npr_is_zero_on_nearest_upsampled_images_only():
    small = torch.rand(2, 3, 16, 16)
    assert torch.equal(npr_residual(F.interpolate(small, scale_factor=2, mode="nearest")), torch.zeros(2, 3, 32, 32))
    image = torch.rand(2, 3, 32, 32)
    residual = npr_residual(image)
    assert torch.equal(residual[..., ::2, ::2], torch.zeros(2, 3, 16, 16))  # each block's reference pixel
    assert torch.equal(residual[..., 1::2, 1::2], image[..., 1::2, 1::2] - image[..., ::2, ::2])
    assert npr_residual(torch.rand(1, 3, 31, 33)).shape == (1, 3, 31, 33)


def test_neighbour_median_residual_ignores_the_centre():
    constant = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(neighbour_median_residual(constant), torch.zeros_like(constant))
    spike = torch.zeros(1, 1, 8, 8)
    spike[0, 0, 4, 4] = 1.0  # its neighbours' median is 0; one 1 among 8 neighbours leaves their medians at 0
    residual = neighbour_median_residual(spike)
    assert residual[0, 0, 4, 4] == 1.0 and residual.abs().sum() == 1.0
    ramp = torch.arange(8.0).expand(1, 1, 8, 8)  # linear: the median of the neighbours is the centre
    assert torch.allclose(neighbour_median_residual(ramp)[..., 1:-1, 1:-1], torch.zeros(1, 1, 6, 6))


def test_high_pass_removes_low_frequencies_and_keeps_high_ones():
    rows = torch.arange(32.0).view(32, 1).expand(32, 32)
    low = torch.cos(2 * math.pi * 3 * rows / 32) + 0.5  # 3 cycles and a constant: inside the removed square
    high = torch.cos(2 * math.pi * 12 * rows / 32)  # 12 cycles: kept
    images = (low + high).expand(2, 3, 32, 32)
    assert torch.allclose(high_pass(images, (-2, -1)), high.expand(2, 3, 32, 32), atol=1e-5)
    channels = torch.cos(2 * math.pi * 7 * torch.arange(16.0) / 16).view(1, 16, 1, 1).expand(1, 16, 4, 4)
    assert torch.allclose(high_pass(channels + 1, (1,)), channels, atol=1e-5)  # along channels: the mean goes


@pytest.fixture(scope="module")
def test_images(cifake):
    real = cifake.load("cifake-real-test").images[:TEST]
    fake = cifake.load("cifake-sd14-test").images[:TEST]
    return np.concatenate([real, fake]), np.r_[np.zeros(TEST, int), np.ones(TEST, int)]


@pytest.fixture(scope="module")
def trained(cifake):
    """Each field detector trained for 2 epochs on 1,000 real + 1,000 fake CIFAKE training images, built on first
    use: batches of 32 at a peak learning rate of 5e-3, so that the few images make enough steps."""
    real = cifake.load("cifake-real-train").images[:TRAIN]
    fake = cifake.load("cifake-sd14-train").images[:TRAIN]
    images, labels = np.concatenate([real, fake]), np.r_[np.zeros(TRAIN, int), np.ones(TRAIN, int)]
    models = {}

    def train(name: str):
        if name not in models:
            seed_everything(0)
            detector = build_detector(name)
            result = train_detector(detector, images, labels, Recipe(epochs=2, batch_size=32, lr=5e-3), seed=0,
                                    device=CPU, progress=False)
            models[name] = detector.eval(), result.threshold
        return models[name]

    return train


@pytest.mark.parametrize("name", FIELD)
def test_learns_real_from_fake_on_cifake(name, trained, test_images):
    detector, _ = trained(name)
    images, labels = test_images
    auc = roc_auc_score(labels, predict_logits(detector, images, CPU))
    # Measured on these 500 + 500 CIFAKE test images with training seeds 0 and 1: npr 0.918 / 0.920, freqnet
    # 0.827 / 0.839, local-residual 0.931 / 0.925, patch-classifier 0.857 / 0.887 (0.5 is chance).
    assert auc > 0.75, auc


@pytest.mark.parametrize("name", FIELD)
def test_dry_run_estimator_times_it(name):
    rate = throughput(name, DETECTORS.get(name).input_size, DETECTORS.get(name).recipe.batch_size, "cpu")
    assert 0 < rate.train < math.inf and 0 < rate.score < math.inf


@pytest.mark.parametrize("name", FIELD)
def test_attacks_and_attributions_apply(name, trained, test_images):
    detector, threshold = trained(name)
    images = torch.tensor(test_images[0][TEST - 4 : TEST + 4]).float() / 255  # 4 reals, 4 fakes
    labels = torch.tensor(test_images[1][TEST - 4 : TEST + 4])
    for attack, params in (("fgsm", {}), ("pgd", {"steps": 2})):
        adversarial = PERTURBATIONS.get(attack)(images, labels, detector, torch.Generator().manual_seed(0),
                                                eps="4/255", **params)
        assert adversarial.shape == images.shape and not torch.equal(adversarial, images), attack
        assert (adversarial - images).abs().max() <= 4 / 255 + 1e-6 and 0 <= adversarial.min() <= adversarial.max() <= 1
    with torch.no_grad():
        signs = torch.where(detector(images) >= threshold, 1.0, -1.0)
    for method in ("saliency", "integrated_gradients", "grad_cam"):
        maps = ATTRIBUTIONS.get(method)(detector, images, signs, AttributionSettings(ig_steps=4)).detach()
        assert maps.shape == (8, 32, 32) and torch.isfinite(maps).all() and maps.abs().sum() > 0, method


@pytest.mark.parametrize("name", FIELD)
def test_attributes_sources(name):
    assert DETECTORS.get(name).attributes_sources
    images = torch.rand(2, 3, 32, 32)
    model = DETECTORS.get(name).factory(num_classes=3).eval()
    with torch.no_grad():
        assert model(images).shape == (2, 3)
        detector = build_detector(name, classes=("real", "sd14", "dcgan")).eval()
        assert detector.class_logits(images).shape == (2, 3) and detector(images).shape == (2,)
