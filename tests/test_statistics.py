"""Aggregation over seeds, paired comparisons and DeLong's test: by hand, against scipy, on real scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu, norm

from bench.metrics import METRICS, bootstrap_intervals, evaluate
from bench.statistics import delong_test, paired_bootstrap, seed_bootstrap
from bench.training import predict_logits

# 3 fakes, 2 reals; two detectors on the same 5 images.
HAND_LABELS = np.array([1, 1, 1, 0, 0])
HAND_A = np.array([0.9, 0.6, 0.3, 0.5, 0.2])
HAND_B = np.array([0.8, 0.4, 0.35, 0.6, 0.1])


@pytest.fixture(scope="module")
def cnn_scores(cifake, trained_cnn):
    """The trained CNN's fake logits on 1,000 real + 1,000 fake CIFAKE test images, and its threshold."""
    detector, threshold = trained_cnn
    images = [cifake.load(name).images[:1000] for name in ("cifake-real-test", "cifake-sd14-test")]
    scores = np.concatenate([predict_logits(detector, part, torch.device("cpu")) for part in images])
    return np.r_[np.zeros(1000, int), np.ones(1000, int)], scores.astype(np.float64), threshold


def noisy(scores: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """A worse detector: the same scores plus Gaussian noise of ``scale`` times their spread."""
    return scores + np.random.default_rng(seed).normal(0, scale * scores.std(), len(scores))


def test_delong_worked_by_hand():
    # Placements (share of the other class beaten, ties half):
    #   A: fakes 0.9 0.6 0.3 beat 2, 2, 1 of the reals -> V10 = 1, 1, 1/2;   AUC_A = 5/6
    #      reals 0.5 0.2 are beaten by 2, 3 of the fakes -> V01 = 2/3, 1
    #   B: fakes 0.8 0.4 0.35 -> V10 = 1, 1/2, 1/2;  AUC_B = 2/3;  reals 0.6 0.1 -> V01 = 1/3, 1
    # Differences A - B: V10 = 0, 1/2, 0 (sample variance 1/12); V01 = 1/3, 0 (sample variance 1/18)
    # Var(AUC_A - AUC_B) = (1/12) / 3 + (1/18) / 2 = 1/36 + 1/36 = 1/18;  z = (1/6) / sqrt(1/18) = sqrt(1/2)
    result = delong_test(HAND_LABELS, HAND_A, HAND_B)
    assert result["auc_a"] == pytest.approx(5 / 6) and result["auc_b"] == pytest.approx(2 / 3)
    assert result["difference"] == pytest.approx(1 / 6)
    assert result["se"] == pytest.approx(np.sqrt(1 / 18))
    assert result["z"] == pytest.approx(np.sqrt(1 / 2))
    assert result["p_value"] == pytest.approx(2 * norm.sf(np.sqrt(1 / 2)))  # 0.4795
    half = norm.ppf(0.975) * np.sqrt(1 / 18)
    assert result["ci"] == pytest.approx([1 / 6 - half, 1 / 6 + half])
    paired = paired_bootstrap([(HAND_LABELS, HAND_A, 0.5)], [(HAND_LABELS, HAND_B, 0.5)], n_boot=200)
    assert paired["metrics"]["roc_auc"]["difference"] == pytest.approx(1 / 6)


def test_auc_is_mann_whitney_u_over_pairs_on_real_scores_with_ties(cnn_scores):
    labels, scores, threshold = cnn_scores
    scores = np.round(scores, 1)  # many ties
    u = mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    auc = u / ((labels == 0).sum() * (labels == 1).sum())
    assert delong_test(labels, scores, scores)["auc_a"] == pytest.approx(auc, abs=1e-12)
    assert evaluate(labels, scores, threshold, n_boot=0)["metrics"]["roc_auc"]["value"] == pytest.approx(auc)


def test_paired_test_tells_apart_detectors_whose_marginal_intervals_overlap(cnn_scores):
    """The CNN against itself with every fake's logit lowered by 5% of the logits' spread: slightly worse
    (AUC about 0.01 lower) on the same images, well inside the marginal intervals' width (about 0.03)."""
    labels, scores, threshold = cnn_scores
    worse = scores - 0.05 * scores.std() * labels
    marginal_a = evaluate(labels, scores, threshold)["metrics"]["roc_auc"]["ci"]
    marginal_b = evaluate(labels, worse, threshold)["metrics"]["roc_auc"]["ci"]
    assert marginal_b[1] > marginal_a[0]  # the marginal intervals overlap
    paired = paired_bootstrap([(labels, scores, threshold)], [(labels, worse, threshold)])["metrics"]["roc_auc"]
    assert paired["ci"][0] > 0 and paired["p_value"] < 0.01
    delong = delong_test(labels, scores, worse)
    assert delong["difference"] == pytest.approx(paired["difference"])
    assert delong["ci"][0] > 0 and delong["p_value"] < 0.01
    # DeLong's standard error and the bootstrap's agree (normal interval width vs percentile interval width)
    assert (paired["ci"][1] - paired["ci"][0]) / (2 * norm.ppf(0.975)) == pytest.approx(delong["se"], rel=0.2)


def test_paired_test_does_not_tell_apart_detectors_that_are_equally_good(cnn_scores):
    """The same scores shuffled within each class: equally good overall, wrong on different images."""
    labels, scores, threshold = cnn_scores
    rng = np.random.default_rng(0)
    shuffled = scores.copy()
    for label in (0, 1):
        images = np.flatnonzero(labels == label)
        shuffled[images] = scores[rng.permutation(images)]
    paired = paired_bootstrap([(labels, scores, threshold)], [(labels, shuffled, threshold)])["metrics"]
    for name in ("accuracy", "balanced_accuracy", "roc_auc", "average_precision"):
        assert paired[name]["difference"] == pytest.approx(0, abs=1e-12)
        assert paired[name]["ci"][0] < 0 < paired[name]["ci"][1] and paired[name]["p_value"] > 0.5
    assert delong_test(labels, scores, shuffled)["p_value"] == pytest.approx(1)


def test_paired_bootstrap_of_runs_against_themselves_is_exactly_zero(cnn_scores):
    labels, scores, threshold = cnn_scores
    runs = [(labels, scores, threshold), (labels, noisy(scores, 0.5, seed=1), threshold)]
    result = paired_bootstrap(runs, runs, n_boot=200)
    assert result["paired_seeds"] is True
    for name in METRICS:
        assert result["metrics"][name] == {"difference": 0.0, "ci": [0.0, 0.0], "p_value": 1.0}
    unpaired = paired_bootstrap(runs, runs[:1], n_boot=200)
    assert unpaired["paired_seeds"] is False
    assert unpaired["metrics"]["roc_auc"]["difference"] < 0  # the noisy second seed pulls a's mean down


def test_one_seed_gives_the_image_bootstrap(cnn_scores):
    labels, scores, threshold = cnn_scores
    result = seed_bootstrap([(labels, scores, threshold)], n_boot=300, seed=4)
    images_only = bootstrap_intervals(labels, scores, threshold, n_boot=300, seed=4)
    point = evaluate(labels, scores, threshold, n_boot=0)["metrics"]
    for name in METRICS:
        metric = result["metrics"][name]
        assert metric["ci"] == list(images_only[name])
        assert metric["mean"] == metric["per_seed"][0] == point[name]["value"]
        assert np.isnan(metric["std"])
    assert result["n_seeds"] == 1


def test_seeds_that_disagree_widen_the_two_level_interval(cnn_scores):
    labels, scores, threshold = cnn_scores
    runs = [(labels, noisy(scores, scale, seed), threshold) for seed, scale in enumerate([0.0, 0.5, 1.0])]
    result = seed_bootstrap(runs, n_boot=500)
    aucs = [evaluate(*run, n_boot=0)["metrics"]["roc_auc"]["value"] for run in runs]
    auc = result["metrics"]["roc_auc"]
    assert auc["per_seed"] == aucs
    assert auc["mean"] == pytest.approx(np.mean(aucs)) and auc["std"] == pytest.approx(np.std(aucs, ddof=1))
    assert auc["ci"][0] < auc["mean"] < auc["ci"][1]
    one_seed = seed_bootstrap(runs[1:2], n_boot=500)["metrics"]["roc_auc"]["ci"]
    assert auc["ci"][1] - auc["ci"][0] > 2 * (one_seed[1] - one_seed[0])
    assert "seeds" in result["bootstrap"]["covers"]


def test_runs_must_share_the_test_images():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    with pytest.raises(ValueError, match="same test images"):
        seed_bootstrap([(labels, scores, 0.5), (labels[::-1], scores, 0.5)])
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap([(labels, scores, 0.5)], [(labels[:3], scores[:3], 0.5)])
