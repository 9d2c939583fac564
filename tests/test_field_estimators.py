"""The field's detectors trained from scratch on real CIFAKE images: DCT (Frank et al. 2020), the azimuthal
spectrum (Durall et al. 2020) and CNNSpot (Wang et al. 2020); estimators stored as arrays, never pickled."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

from bench.attribution import ATTRIBUTIONS, AttributionSettings
from bench.detector import DETECTORS, build_detector
from bench.estimate import throughput
from bench.estimator import EPSILON, EstimatorDetector, EstimatorError, forest_arrays
from bench.perturbations import PERTURBATIONS
from bench.recipe import Recipe
from bench.runner import Runner
from bench.suite import load_suite
from bench.training import fit_estimator, predict_logits, seed_everything, train_detector

ESTIMATORS = ["dct-linear", "spectrum-lr"]
PER_CLASS, TEST_PER_CLASS = 1500, 500

SUITE = """
name: field
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 400}]
test: {real: cifake-real-test, fake: [cifake-sd14-test], limit: 100}
detectors: [{name: dct-linear}, {name: spectrum-lr}]
perturbations: [clean, {name: fgsm, eps: 2/255}]
attribution: {methods: [saliency], images: 4}
bootstrap: 20
"""


@pytest.fixture(scope="module")
def data(cifake) -> dict[str, np.ndarray]:
    """1,500 real + 1,500 fake CIFAKE training images and 500 + 500 test images, with labels."""
    train = [cifake.load(name).images[:PER_CLASS] for name in ("cifake-real-train", "cifake-sd14-train")]
    test = [cifake.load(name).images[:TEST_PER_CLASS] for name in ("cifake-real-test", "cifake-sd14-test")]
    return {"train": np.concatenate(train), "train_labels": np.repeat([0, 1], PER_CLASS),
            "test": np.concatenate(test), "test_labels": np.repeat([0, 1], TEST_PER_CLASS)}


@pytest.fixture(scope="module")
def fitted(data) -> dict[str, EstimatorDetector]:
    """Each estimator detector fitted through the training loop's split and threshold rule (seed 0)."""
    detectors = {}
    for name in ESTIMATORS:
        detectors[name] = build_detector(name)
        fit_estimator(detectors[name], data["train"], data["train_labels"], DETECTORS.get(name).recipe, seed=0)
    return detectors


@pytest.fixture(scope="module")
def dct_cnn(data):
    """dct-cnn trained for two epochs with its own recipe, and its validation threshold."""
    seed_everything(0)
    detector = build_detector("dct-cnn")
    recipe = DETECTORS.get("dct-cnn").recipe.updated(epochs=2)
    result = train_detector(detector, data["train"], data["train_labels"], recipe, 0, torch.device("cpu"),
                            progress=False)
    return detector.eval(), result.threshold


@pytest.mark.parametrize("name", ESTIMATORS)
def test_estimators_learn_to_detect_stable_diffusion_images(name, fitted, data):
    auc = roc_auc_score(data["test_labels"], fitted[name].logits(data["test"]))
    assert auc > 0.75, auc  # measured 0.86 (dct-linear), 0.83 (spectrum-lr); chance is 0.5


def test_dct_cnn_learns_to_detect_stable_diffusion_images(dct_cnn, data):
    auc = roc_auc_score(data["test_labels"], predict_logits(dct_cnn[0], data["test"], torch.device("cpu")))
    assert auc > 0.75, auc  # measured 0.88


@pytest.mark.parametrize("name", ESTIMATORS)
def test_estimators_round_trip_through_safetensors_with_identical_logits(name, fitted, data, tmp_path):
    detector = fitted[name]
    save_file(detector.state(), tmp_path / "weights.safetensors")
    loaded = build_detector(name)
    loaded.load_state(load_file(tmp_path / "weights.safetensors"))
    assert np.array_equal(loaded.logits(data["test"]), detector.logits(data["test"]))
    features = detector.features(data["test"])  # the arrays score exactly as scikit-learn does
    assert np.array_equal(detector.scorer.predict_proba(features), detector.estimator.predict_proba(features))


def test_an_estimator_that_cannot_be_stored_without_pickle_is_refused(data):
    detector = EstimatorDetector(DETECTORS.get("random-forest"), KNeighborsClassifier(n_neighbors=3))
    with pytest.raises(EstimatorError, match="KNeighborsClassifier cannot be stored without pickle"):
        detector.fit(data["train"][::50], data["train_labels"][::50])
    with pytest.raises(EstimatorError, match="not fitted"):
        detector.state()
    with pytest.raises(EstimatorError, match="no known estimator kind"):
        detector.load_state({"weights": torch.zeros(3)})


def test_random_forest_stores_and_scores_as_before(data):
    """The arrays and logits of a random forest are scikit-learn's, as they were before estimators had codecs."""
    images, labels = data["train"][::10], data["train_labels"][::10]
    detector = build_detector("random-forest", n_estimators=5, n_jobs=1)
    detector.estimator.set_params(random_state=0)
    detector.fit(images, labels)
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255
    forest = RandomForestClassifier(n_estimators=5, n_jobs=1, random_state=0).fit(pixels, labels)
    state, expected = detector.state(), forest_arrays(forest)
    assert list(state) == list(expected) and list(state)[:5] == [
        "tree0.children_left", "tree0.children_right", "tree0.feature", "tree0.threshold", "tree0.value"]
    for key, array in expected.items():
        assert state[key].dtype == torch.from_numpy(array).dtype and np.array_equal(state[key].numpy(), array), key
    test = data["test"].reshape(len(data["test"]), -1).astype(np.float32) / 255
    probability = np.clip(forest.predict_proba(test)[:, 1], EPSILON, 1 - EPSILON)
    assert np.array_equal(detector.logits(data["test"]), np.log(probability / (1 - probability)).astype(np.float32))


def test_dct_cnn_supports_attacks_and_attributions(dct_cnn, data):
    detector, threshold = dct_cnn
    images = torch.tensor(data["test"][::5]).float() / 255
    labels = torch.tensor(data["test_labels"][::5])
    attacked = PERTURBATIONS.get("pgd")(images, labels, detector, torch.Generator().manual_seed(0), eps="4/255")
    assert (attacked - images).abs().max() <= 4 / 255 + 1e-6
    with torch.no_grad():
        clean, adversarial = detector(images), detector(attacked)
    accuracy = [((logits >= threshold).long() == labels).float().mean().item() for logits in (clean, adversarial)]
    assert accuracy[1] < accuracy[0] - 0.25, accuracy  # measured 0.75 -> 0.30: the gradients reach the pixels
    signs = torch.where(clean >= threshold, 1.0, -1.0)
    for method in ("saliency", "grad_cam"):
        maps = ATTRIBUTIONS.get(method)(detector, images[:8], signs[:8], AttributionSettings()).detach()
        assert maps.shape[-2:] == (32, 32) and torch.isfinite(maps).all() and maps.abs().sum() > 0, method


@pytest.mark.parametrize(("name", "kwargs"), [
    ("dct-cnn", {}), ("dct-linear", {}), ("spectrum-lr", {}),
    pytest.param("cnnspot", {}, marks=pytest.mark.slow),  # ResNet-50: ~20 s to time on 2 cores
])
def test_dry_run_estimate_times_each_detector(name, kwargs):
    rate = throughput(name, 32, 128, "cpu", kwargs)
    assert rate.train > 0 and rate.score > 0


@pytest.mark.slow  # ResNet-50 at about 100 training images/s: a few minutes on 2 busy cores
def test_cnnspot_learns_with_its_blur_and_jpeg_recipe(data):
    seed_everything(0)
    detector = build_detector("cnnspot")
    recipe = DETECTORS.get("cnnspot").recipe.updated(epochs=2)  # blur and JPEG on, as registered
    train_detector(detector, data["train"], data["train_labels"], recipe, 0, torch.device("cpu"), progress=False)
    auc = roc_auc_score(data["test_labels"], predict_logits(detector.eval(), data["test"], torch.device("cpu")))
    assert auc > 0.7, auc  # measured: 0.815 on these 500 + 500 test images (0.5 is chance)


def test_cnnspot_is_resnet50_with_the_blur_and_jpeg_recipe():
    spec = DETECTORS.get("cnnspot")
    assert spec.recipe.augment[:2] == ("blur", "jpeg") and "flip" in spec.recipe.augment
    assert (spec.recipe.blur_probability, spec.recipe.blur_sigma) == (0.5, 3.0)
    assert (spec.recipe.jpeg_probability, spec.recipe.jpeg_quality) == (0.5, (30, 100))
    detector = build_detector("cnnspot").eval()
    reference = build_detector("resnet50").model.state_dict()
    assert {k: v.shape for k, v in detector.model.state_dict().items()} == {k: v.shape for k, v in reference.items()}
    with torch.no_grad():
        logits = detector(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2,) and torch.isfinite(logits).all()


def test_a_suite_scores_the_estimators_with_attacks_and_attributions_not_applicable(cifake_dir, data_root, tmp_path):
    (tmp_path / "field.yaml").write_text(textwrap.dedent(SUITE))
    runner = Runner(cifake_dir, tmp_path / "results", data_root, device="cpu", progress=False)
    records = {(r.detector, r.perturbation.name): r for r in runner.run(load_suite(tmp_path / "field.yaml")).records}
    for name in ESTIMATORS:
        clean, attacked = records[name, "clean"], records[name, "fgsm"]
        assert clean.metrics["roc_auc"].value > 0.6, name  # 400 training images per class
        assert "not differentiable" in attacked.not_applicable and attacked.metrics == {}
        assert "differentiable" in clean.attribution.not_applicable
        assert clean.training.recipe == Recipe(epochs=1, augment=()).model_dump(mode="json")
