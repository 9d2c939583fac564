"""Corruptions: level zero changes nothing, larger levels change more, seeds repeat, labels are ignored; every
perturbation declares its cost (gradient steps per image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.perturbations import (
    PERTURBATIONS,
    PerturbationEntry,
    gradient_steps,
    needs_gradients,
    register_perturbation,
)

LADDERS = {
    "jpeg": ("quality", [90, 50, 30]),  # 75 is left out: see the test below
    "blur": ("sigma", [0.5, 1, 2]),
    "noise": ("sigma", [0.02, 0.05, 0.1]),
    "resize": ("scale", [0.75, 0.5]),
}


@pytest.fixture(scope="module")
def images(cifake):
    return torch.tensor(np.asarray(cifake.load("cifake-real-test").images[:64])).float() / 255


def apply(name, images, labels=None, seed=0, **params):
    labels = torch.zeros(len(images)) if labels is None else labels
    return PERTURBATIONS.get(name)(images, labels, None, torch.Generator().manual_seed(seed), **params)


@pytest.mark.parametrize("name", sorted(LADDERS))
def test_stronger_levels_change_real_images_more(name, images):
    parameter, levels = LADDERS[name]
    changes = [(apply(name, images, **{parameter: level}) - images).abs().mean().item() for level in levels]
    assert all(change > 0 for change in changes)
    assert changes == sorted(changes)


@pytest.mark.parametrize(("name", "params"), [("clean", {}), ("blur", {"sigma": 0}), ("noise", {"sigma": 0}),
                                              ("resize", {"scale": 1.0})])
def test_level_zero_changes_nothing(name, params, images):
    assert torch.allclose(apply(name, images, **params), images, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LADDERS))
def test_deterministic_under_a_seed_and_blind_to_labels(name, images):
    parameter, levels = LADDERS[name]
    first = apply(name, images, seed=3, **{parameter: levels[-1]})
    again = apply(name, images, labels=torch.ones(len(images)), seed=3, **{parameter: levels[-1]})
    assert torch.equal(first, again)
    assert first.min() >= 0 and first.max() <= 1


def test_out_of_range_levels_are_refused(images):
    with pytest.raises(ValueError, match="quality"):
        apply("jpeg", images, quality=0)
    with pytest.raises(ValueError, match="scale"):
        apply("resize", images, scale=2)


def test_resaving_cifake_at_its_own_jpeg_quality_changes_it_least(images):
    """CIFAKE was saved as Pillow JPEG q75: re-saving at q75 nearly reproduces it, q90 changes it more."""
    change = {q: (apply("jpeg", images, quality=q) - images).abs().mean().item() for q in (90, 75)}
    assert change[75] < change[90] / 3


def test_every_perturbation_declares_its_cost_and_an_attack_counts_its_steps():
    corruptions = {"clean", "jpeg", "blur", "noise", "resize"}
    for name in PERTURBATIONS.names():
        spec = PERTURBATIONS.get(name)
        assert spec.kind == ("corruption" if name in corruptions else "attack"), name
        assert (gradient_steps(PerturbationEntry(name=name)) == 0) == (name in corruptions), name
    assert gradient_steps(PerturbationEntry(name="fgsm")) == 1
    assert gradient_steps(PerturbationEntry(name="pgd")) == 10  # its default
    assert gradient_steps(PerturbationEntry.model_validate({"name": "pgd", "steps": 40})) == 40


def test_a_new_attack_brings_its_cost_and_cannot_be_registered_without_one():
    with pytest.raises(TypeError, match="gradient_steps"):
        register_perturbation("cheap-attack")

    @register_perturbation("restarted-pgd", gradient_steps=lambda params: params["steps"] * params["restarts"])
    def restarted(images, labels, detector, generator, steps: int = 5, restarts: int = 2):
        """PGD from several random starts."""
        return images

    try:
        entry = PerturbationEntry.model_validate({"name": "restarted-pgd", "restarts": 3})
        assert gradient_steps(entry) == 15 and needs_gradients("restarted-pgd")
        assert PERTURBATIONS.description("restarted-pgd") == "PGD from several random starts."
        with pytest.raises(ValueError, match="has no parameter"):
            PerturbationEntry.model_validate({"name": "restarted-pgd", "eps": 1})
    finally:
        PERTURBATIONS.unregister("restarted-pgd")
