"""CNNSpot's training blur and JPEG as recipe augmentations: what they do to real CIFAKE images, that a seed fixes
them, and that the recipes written before they existed keep their checkpoint keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.augment import augment, blur, jpeg
from bench.detector import DETECTORS, build_detector
from bench.provenance import content_key
from bench.recipe import SETTINGS, Recipe
from bench.spectrum import mean_log_spectrum, radial_profile
from bench.training import seed_everything, train_detector

# Recipe().model_dump(mode="json") before blur and jpeg existed: it is what checkpoint keys were made of.
DEFAULT_DUMP = {"epochs": 10, "batch_size": 128, "lr": 0.001, "weight_decay": 0.0005, "optimizer": "adamw",
                "augment": ["flip"], "max_shift": 2, "val_fraction": 0.1}
NEW_FIELDS = {name for names in SETTINGS.values() for name in names}


@pytest.fixture(scope="module")
def pixels(cifake) -> torch.Tensor:
    """400 CIFAKE test images (half real, half fake) as floats in [0, 1]."""
    real, fake = (cifake.load(name).images[:200] for name in ("cifake-real-test", "cifake-sd14-test"))
    images = np.concatenate([real, fake])
    return torch.tensor(images).float() / 255


def changed(out: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per image: whether any pixel moved."""
    return (out != images).flatten(1).any(1)


def high_frequency(images: torch.Tensor) -> float:
    """Mean log spectrum over the outer third of the frequencies (bench show --spectrum's rings)."""
    spectrum = mean_log_spectrum((images * 255).round().to(torch.uint8).numpy())
    frequencies, profile = radial_profile(spectrum)
    return float(profile[frequencies > 1 / 3].mean())


def test_recipes_without_blur_or_jpeg_dump_as_before():
    assert Recipe().model_dump(mode="json") == DEFAULT_DUMP
    # a setting of an augmentation the recipe does not use changes nothing in training, so nothing in the key
    assert Recipe(blur_sigma=1.0, jpeg_quality=(50, 60)).model_dump(mode="json") == DEFAULT_DUMP
    for name in DETECTORS.names():
        recipe = DETECTORS.get(name).recipe
        if not {"blur", "jpeg"} & set(recipe.augment):
            assert set(recipe.model_dump(mode="json")) == set(DEFAULT_DUMP), name


def test_blur_and_jpeg_settings_enter_the_key_of_a_recipe_that_uses_them():
    recipe = Recipe(augment=("blur", "jpeg", "flip"))
    dump = recipe.model_dump(mode="json")
    assert set(dump) == set(DEFAULT_DUMP) | NEW_FIELDS
    assert dump["jpeg_quality"] == [30, 100] and dump["blur_probability"] == 0.5
    keys = {content_key(r.model_dump(mode="json")) for r in
            (recipe, recipe.updated(blur_probability=0.1), recipe.updated(jpeg_quality=(60, 100)), Recipe())}
    assert len(keys) == 4
    assert Recipe.model_validate(dump) == recipe
    only_blur = Recipe(augment=("blur",)).model_dump(mode="json")
    assert set(only_blur) - set(DEFAULT_DUMP) == {"blur_probability", "blur_sigma"}


def test_updated_keeps_settings_the_dump_leaves_out():
    assert Recipe(blur_sigma=1.0).updated(augment=("blur",)).blur_sigma == 1.0
    with pytest.raises(ValueError, match="jpeg_quality"):
        Recipe(jpeg_quality=(80, 40))
    with pytest.raises(ValueError):
        Recipe(blur_probability=1.5)


@pytest.mark.parametrize(("name", "function", "settings"), [
    ("blur", blur, {"blur_probability": 0.5, "blur_sigma": 3.0}),
    ("jpeg", jpeg, {"jpeg_probability": 0.5, "jpeg_quality": (30, 100)}),
])
def test_blur_and_jpeg_keep_shape_and_range_follow_the_seed_and_their_probability(pixels, name, function, settings):
    out = function(pixels, torch.Generator().manual_seed(0), **settings)
    assert out.shape == pixels.shape and out.dtype == pixels.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, function(pixels, torch.Generator().manual_seed(0), **settings))
    assert not torch.equal(out, function(pixels, torch.Generator().manual_seed(1), **settings))
    share = changed(out, pixels).float().mean().item()
    assert 0.4 < share < 0.6, share  # measured 0.48 (blur: a sigma near 0 leaves an image as it was) and 0.50
    never = function(pixels, torch.Generator().manual_seed(0), **(settings | {f"{name}_probability": 0.0}))
    assert torch.equal(never, pixels)
    always = function(pixels, torch.Generator().manual_seed(0), **(settings | {f"{name}_probability": 1.0}))
    assert changed(always, pixels).float().mean() > 0.9


def test_blur_and_strong_jpeg_remove_high_frequencies(pixels):
    before = high_frequency(pixels)
    blurred = blur(pixels, torch.Generator().manual_seed(0), blur_probability=1.0, blur_sigma=3.0)
    compressed = jpeg(pixels, torch.Generator().manual_seed(0), jpeg_probability=1.0, jpeg_quality=(30, 40))
    assert high_frequency(blurred) < before - 1  # log units: measured about 3 lower
    assert high_frequency(compressed) < before - 0.1  # measured about 0.4 lower (CIFAKE is JPEG q75 already)
    # sigmas drawn up to 0.5 smooth less than sigmas up to 3
    mild = blur(pixels, torch.Generator().manual_seed(0), blur_probability=1.0, blur_sigma=0.5)
    assert high_frequency(blurred) < high_frequency(mild) < before


def test_augment_passes_each_augmentation_the_recipe_settings_it_names(pixels):
    recipe = Recipe(augment=("blur", "jpeg"), blur_probability=1.0, jpeg_probability=0.0)
    out = augment(pixels[:64], recipe.augment, torch.Generator().manual_seed(3), recipe.max_shift,
                  **recipe.augment_settings)
    generator = torch.Generator().manual_seed(3)  # one generator, drawn from in the recipe's order
    expected = jpeg(blur(pixels[:64], generator, blur_probability=1.0, blur_sigma=3.0), generator,
                    jpeg_probability=0.0, jpeg_quality=(30, 100))
    assert torch.equal(out, expected) and changed(out, pixels[:64]).any()


def test_training_with_blur_and_jpeg_is_deterministic(cifake):
    images = np.concatenate([cifake.load("cifake-real-train").images[2000:2064],
                             cifake.load("cifake-sd14-train").images[2000:2064]])
    labels = np.r_[np.zeros(64, int), np.ones(64, int)]
    runs = []
    for recipe in (Recipe(epochs=1, batch_size=64, augment=("blur", "jpeg", "flip")),) * 2 + (
            Recipe(epochs=1, batch_size=64, augment=("flip",)),):
        seed_everything(5)
        runs.append(train_detector(build_detector("lenet"), images, labels, recipe, 5, torch.device("cpu"),
                                   progress=False).state)
    first, again, plain = runs
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], plain[name]) for name in first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (nvjpeg)")
def test_blur_and_jpeg_run_on_the_training_device(pixels):
    on_gpu = pixels[:256].cuda()
    for function, settings in ((blur, {"blur_probability": 0.5, "blur_sigma": 3.0}),
                               (jpeg, {"jpeg_probability": 0.5, "jpeg_quality": (30, 100)})):
        out = function(on_gpu, torch.Generator("cuda").manual_seed(0), **settings)
        assert out.device == on_gpu.device and out.shape == on_gpu.shape and 0 <= out.min() <= out.max() <= 1
        assert torch.equal(out, function(on_gpu, torch.Generator("cuda").manual_seed(0), **settings))
        assert 0.35 < changed(out, on_gpu).float().mean().item() < 0.65
