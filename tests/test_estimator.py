"""A detector that is not a neural network: a random forest trained through the same validation split and
threshold rule, stored without pickle, scored under corruptions, and "not applicable" under attacks; networks and
estimators follow one protocol (bench.model.DetectorModel)."""

from __future__ import annotations

import textwrap

import numpy as np
import torch
from conftest import linked_sources
from sklearn.ensemble import RandomForestClassifier

from bench.detector import build_detector
from bench.estimator import forest_arrays, forest_from_arrays
from bench.model import detection_scores
from bench.runner import Runner
from bench.suite import load_suite

SUITE = """
name: forest
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 400}]
test: {real: cifake-real-test, fake: [cifake-sd14-test], limit: 200}
detectors: [{name: random-forest, kwargs: {n_estimators: 20}}]
perturbations: [clean, {name: blur, sigma: 1}, {name: fgsm, eps: 2/255}]
attribution: {methods: [saliency], images: 4}
bootstrap: 50
"""


def test_the_stored_arrays_score_exactly_as_scikit_learn(cifake):
    images = np.concatenate([cifake.load("cifake-real-train").images[:300],
                             cifake.load("cifake-sd14-train").images[:300]])
    features = images.reshape(600, -1).astype(np.float32) / 255
    labels = np.r_[np.zeros(300, int), np.ones(300, int)]
    forest = RandomForestClassifier(n_estimators=7, random_state=0).fit(features, labels)
    test = cifake.load("cifake-sd14-test").images[:200].reshape(200, -1).astype(np.float32) / 255
    stored = forest_from_arrays(forest_arrays(forest))
    np.testing.assert_array_equal(stored.predict_proba(test), forest.predict_proba(test))


def test_a_random_forest_runs_a_suite_with_attacks_marked_not_applicable(cifake_dir, data_root, tmp_path):
    (tmp_path / "forest.yaml").write_text(textwrap.dedent(SUITE))
    cache = linked_sources(cifake_dir, tmp_path / "cache")
    runner = Runner(cache, tmp_path / "results", data_root, device="cpu", progress=False)
    summary = runner.run(load_suite(tmp_path / "forest.yaml"))
    by_perturbation = {r.perturbation.name: r for r in summary.records}
    clean = by_perturbation["clean"]
    assert clean.metrics["roc_auc"].value > 0.6 and clean.attribution.not_applicable
    assert clean.training.val["balanced_accuracy"] > 0.55
    assert by_perturbation["blur"].metrics["accuracy"].value > 0  # corruptions apply
    attacked = by_perturbation["fgsm"]
    assert "not differentiable" in attacked.not_applicable and attacked.metrics == {}
    markdown = summary.leaderboard["markdown"].read_text()
    assert "not applicable" in markdown

    again = Runner(cache, tmp_path / "again", data_root, device="cpu", progress=False)
    assert again.run(load_suite(tmp_path / "forest.yaml")).records[0].metrics == clean.metrics


def test_network_and_estimator_detectors_share_one_protocol():
    """Scores of uint8 pixels (an array, or a tensor), a checkpoint state that builds the same scorer again, and
    whether gradients reach the pixels: what execute and estimate ask of any detector, without asking its type."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(40) % 2
    network, forest = build_detector("lenet"), build_detector("random-forest", n_estimators=5)
    forest.fit(pixels, labels)
    assert (network.differentiable, forest.differentiable) == (True, False)
    for detector in (network, forest):
        logits = detector.logits(pixels, torch.device("cpu"))
        assert logits.shape == (40,) and logits.dtype == np.float32
        np.testing.assert_array_equal(detector.outputs(torch.from_numpy(pixels)), logits)
        again = build_detector(detector.spec.name, **({"n_estimators": 5} if not detector.differentiable else {}))
        again.load_state(detector.state())
        np.testing.assert_array_equal(again.logits(pixels), logits)
    attributing = build_detector("resnet50", classes=("real", "a", "b"))
    outputs = attributing.outputs(pixels[:4], torch.device("cpu"))
    assert outputs.shape == (4, 3)
    np.testing.assert_allclose(attributing.logits(pixels[:4]), detection_scores(outputs))
