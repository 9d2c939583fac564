"""A detector that is not a neural network: a random forest trained through the same validation split and
threshold rule, stored without pickle, scored under corruptions, and "not applicable" under attacks."""

from __future__ import annotations

import shutil
import textwrap

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from bench.estimator import forest_arrays, forest_from_arrays
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
    cache = tmp_path / "cache"
    shutil.copytree(cifake_dir, cache)
    runner = Runner(cache, tmp_path / "results", data_root, device="cpu", progress=False)
    summary = runner.run(load_suite(tmp_path / "forest.yaml"))
    by_perturbation = {r["perturbation"]["name"]: r for r in summary.records}
    clean = by_perturbation["clean"]
    assert clean["metrics"]["roc_auc"]["value"] > 0.6 and clean["attribution"]["not_applicable"]
    assert clean["training"]["val"]["balanced_accuracy"] > 0.55
    assert by_perturbation["blur"]["metrics"]["accuracy"]["value"] > 0  # corruptions apply
    attacked = by_perturbation["fgsm"]
    assert "not differentiable" in attacked["not_applicable"] and attacked["metrics"] == {}
    markdown = summary.leaderboard["markdown"].read_text()
    assert "not applicable" in markdown

    again = Runner(cache, tmp_path / "again", data_root, device="cpu", progress=False)
    assert again.run(load_suite(tmp_path / "forest.yaml")).records[0]["metrics"] == clean["metrics"]
