"""The VGG-like CIFAKE detector: its shape, and that the one training loop teaches it on real CIFAKE images."""

from __future__ import annotations

import numpy as np
import torch

from bench.detector import DETECTORS, build_detector
from bench.training import predict_logits, seed_everything, train_detector


def test_vgg_builds_with_the_seed_study_layers_and_gives_one_logit_per_image():
    detector = build_detector("vgg-cifake").eval()
    convs = [m for m in detector.model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in detector.model.modules() if isinstance(m, torch.nn.Linear)]
    assert sorted({c.out_channels for c in convs}) == [64, 128, 256, 512] and {c.kernel_size for c in convs} == {(3, 3)}
    assert [d.out_features for d in dense] == [4000, 1500, 1]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.model.modules())
    assert any(isinstance(m, torch.nn.Dropout) for m in detector.model.modules())
    with torch.no_grad():
        assert detector(torch.rand(3, 3, 32, 32)).shape == (3,)
    assert DETECTORS.get("vgg-cifake").attributes_sources
    deeper = build_detector("vgg-cifake", convs=2).model  # two convs per block, as in VGG itself
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deeper.modules()) == 8


def test_vgg_learns_real_vs_fake_on_a_small_cifake_subset(cifake):
    per_class = 500  # one epoch on 1,000 images: accuracy 0.69 (0.74 on 2,000, 0.54 on 600)
    images = np.concatenate([cifake.load("cifake-real-train").images[:per_class],
                             cifake.load("cifake-sd14-train").images[:per_class]])
    labels = np.r_[np.zeros(per_class, int), np.ones(per_class, int)]
    seed_everything(0)
    detector = build_detector("vgg-cifake")
    recipe = DETECTORS.get("vgg-cifake").recipe.updated(epochs=1)
    result = train_detector(detector, images, labels, recipe, seed=0, device=torch.device("cpu"),
                            progress=False)
    test = np.concatenate([cifake.load("cifake-real-test").images[:200], cifake.load("cifake-sd14-test").images[:200]])
    logits = predict_logits(detector, test, torch.device("cpu"))
    accuracy = ((logits > result.threshold) == np.r_[np.zeros(200), np.ones(200)]).mean()
    assert accuracy > 0.6, accuracy
