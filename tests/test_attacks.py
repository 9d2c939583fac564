"""FGSM and PGD (torchattacks) against a detector trained on real CIFAKE images, and the evasion rate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.metrics import evasion_rate
from bench.perturbations import PERTURBATIONS, pixel_budget
from bench.suite import SuiteError, load_suite


@pytest.fixture(scope="module")
def test_batch(cifake):
    real = cifake.load("cifake-real-test").images[:200]
    fake = cifake.load("cifake-sd14-test").images[:200]
    images = torch.tensor(np.concatenate([real, fake])).float() / 255
    return images, torch.tensor(np.r_[np.zeros(200, int), np.ones(200, int)])


def attack(name, detector, images, labels, seed=0, **params):
    return PERTURBATIONS.get(name)(images, labels, detector, torch.Generator().manual_seed(seed), **params)


def accuracy(detector, threshold, images, labels):
    with torch.no_grad():
        return ((detector(images) >= threshold).long() == labels).float().mean().item()


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_eps_zero_changes_nothing(name, trained_cnn, test_batch):
    detector, _ = trained_cnn
    images, labels = test_batch
    assert torch.equal(attack(name, detector, images, labels, eps=0), images)


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_attacks_stay_within_budget_and_pixel_range(name, trained_cnn, test_batch):
    detector, _ = trained_cnn
    images, labels = test_batch
    adversarial = attack(name, detector, images[:64], labels[:64], eps="4/255")
    assert (adversarial - images[:64]).abs().max() <= 4 / 255 + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert not torch.equal(adversarial, images[:64])


def test_pgd_at_8_over_255_defeats_a_trained_detector(trained_cnn, test_batch):
    detector, threshold = trained_cnn
    images, labels = test_batch
    clean = accuracy(detector, threshold, images, labels)
    fgsm = accuracy(detector, threshold, attack("fgsm", detector, images, labels, eps="8/255"), labels)
    pgd = accuracy(detector, threshold, attack("pgd", detector, images, labels, eps="8/255"), labels)
    assert clean > 0.75  # measured 0.80-0.85 for this detector
    assert pgd < clean - 0.5
    assert pgd <= fgsm  # ten projected steps are at least as strong as one


def test_pgd_random_start_is_repeatable_under_a_seed(trained_cnn, test_batch):
    detector, _ = trained_cnn
    images, labels = test_batch[0][:32], test_batch[1][:32]
    first = attack("pgd", detector, images, labels, seed=5, eps="2/255", steps=2)
    assert torch.equal(first, attack("pgd", detector, images, labels, seed=5, eps="2/255", steps=2))
    assert not torch.equal(first, attack("pgd", detector, images, labels, seed=6, eps="2/255", steps=2))


def test_pixel_budgets_are_read_as_fractions_or_numbers():
    assert pixel_budget("8/255") == pytest.approx(8 / 255)
    assert pixel_budget(0.5) == 0.5
    for bad in ("eight", "1/0", 2, -0.1):
        with pytest.raises(ValueError, match="8/255"):
            pixel_budget(bad)


def test_evasion_rate_counts_flips_among_detected_fakes():
    clean = np.array([2.0, 3.0, 1.0, -1.0, 0.5])  # threshold 0: four detected
    attacked = np.array([-1.0, 3.0, -0.5, -2.0, 0.2])  # two of the four flip to "real"
    rate = evasion_rate(clean, attacked, threshold=0.0)
    assert rate["value"] == 0.5 and rate["n"] == 4
    assert rate["ci"][0] < 0.5 < rate["ci"][1]
    assert np.isnan(evasion_rate(np.array([-1.0]), np.array([-1.0]), 0.0)["value"])


def test_suites_refuse_unknown_perturbation_parameters(tmp_path):
    data = json.loads(load_suite("smoke").model_dump_json()) | {"perturbations": [{"name": "fgsm", "epsilon": "8/255"}]}
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(data))
    with pytest.raises(SuiteError, match=r"perturbations\.0.*no parameter\(s\) epsilon; allowed: eps"):
        load_suite(path)
