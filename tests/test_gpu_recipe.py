"""What a GPU lease needs: the GPU recipe (a suite's ``recipe_profile: gpu`` trains every network at its GPU batch
size with the learning rate scaled by the optimizer's rule; estimators, overrides and suites that do not ask keep
their recipes), and records that name the commit of a device's copy of the code."""

from __future__ import annotations

import math

import pytest

from bench.detector import DETECTORS
from bench.plan import grid
from bench.provenance import COMMIT_VARIABLE, git_commit
from bench.recipe import Recipe
from bench.suite import SuiteError, load_suite, suite_names


def test_the_learning_rate_follows_the_square_root_rule_for_adamw_and_the_linear_rule_for_sgd():
    adamw = Recipe(batch_size=128, lr=2e-3).at_batch_size(1024)
    assert adamw.batch_size == 1024 and adamw.lr == pytest.approx(2e-3 * math.sqrt(8))
    sgd = Recipe(batch_size=512, lr=0.2, optimizer="sgd").at_batch_size(1024)
    assert sgd.batch_size == 1024 and sgd.lr == pytest.approx(0.4)
    assert Recipe(lr=1e-3).at_batch_size(128) == Recipe(lr=1e-3)  # the same batch: the same recipe, the same key
    smaller = Recipe(batch_size=128, lr=1e-3).at_batch_size(32)
    assert smaller.lr == pytest.approx(5e-4)
    kept = Recipe(epochs=3, augment=("blur", "flip"), blur_sigma=1.0).at_batch_size(256)
    assert (kept.epochs, kept.augment, kept.blur_sigma) == (3, ("blur", "flip"), 1.0)


def test_every_network_has_a_gpu_recipe_at_its_gpu_batch_and_estimators_keep_theirs():
    for name in DETECTORS.names():
        spec = DETECTORS.get(name)
        assert spec.recipe_for("default") == spec.recipe
        gpu = spec.recipe_for("gpu")
        if spec.differentiable:
            assert gpu.batch_size == spec.gpu_batch_size >= spec.recipe.batch_size, name
            assert gpu.lr > spec.recipe.lr or gpu.batch_size == spec.recipe.batch_size, name
            assert gpu.model_dump(exclude={"batch_size", "lr"}) == spec.recipe.model_dump(exclude={"batch_size", "lr"})
        else:
            assert gpu == spec.recipe, name


def test_a_suite_asks_for_the_gpu_recipe_and_its_overrides_apply_on_top():
    suite = load_suite("quickstart")
    entry = next(e for e in suite.detectors if DETECTORS.get(e.name).differentiable)
    spec = DETECTORS.get(entry.name)
    default = grid(suite, entry)[0]
    gpu_suite = suite.model_copy(update={"recipe_profile": "gpu"})
    gpu = grid(gpu_suite, entry)[0]
    assert default == spec.recipe.updated(**suite.recipe, **entry.recipe)
    assert gpu == spec.recipe.at_batch_size(spec.gpu_batch_size).updated(**suite.recipe, **entry.recipe)
    assert gpu != default
    pinned = grid(gpu_suite.model_copy(update={"recipe": {**suite.recipe, "batch_size": 64, "lr": 1e-4}}), entry)[0]
    assert (pinned.batch_size, pinned.lr) == (64, 1e-4)


def test_no_shipped_suite_asks_for_the_gpu_recipe_until_it_is_shown_to_keep_accuracy():
    # benchmarks/batch_scaling.py on 20,000 CIFAKE images per class: batch 1,024 lost 1.9 points of validation
    # balanced accuracy and 512 lost 0.6, both outside the seed spread (README, "The GPU recipe")
    assert {load_suite(name).recipe_profile for name in suite_names()} == {"default"}


def test_an_unknown_profile_is_refused_at_load_time(tmp_path):
    path = tmp_path / "suite.yaml"
    text = (load_suite("quickstart").model_dump_json())
    path.write_text(text.replace('"recipe_profile":"default"', '"recipe_profile":"tpu"'))
    with pytest.raises(SuiteError, match="recipe_profile"):
        load_suite(str(path))


def test_a_copy_without_its_history_names_its_commit_through_the_environment(monkeypatch):
    here = git_commit()
    git_commit.cache_clear()  # read once per process: the variable is set before bench starts
    monkeypatch.setenv(COMMIT_VARIABLE, "f" * 40)
    assert git_commit() == {"commit": "f" * 40, "dirty": None}  # whether that copy was edited is not known
    git_commit.cache_clear()
    monkeypatch.delenv(COMMIT_VARIABLE)
    assert git_commit() == here
