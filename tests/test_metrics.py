"""Metrics against values computed by hand, and the bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from bench.metrics import _count_metrics, bootstrap_intervals, choose_threshold, evaluate

# 4 reals, 4 fakes. Scores: reals 0.1 0.4 0.35 0.8 ; fakes 0.9 0.6 0.3 0.7 ; threshold 0.5
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.6, 0.3, 0.7])


def test_metrics_match_hand_computed_values():
    result = evaluate(LABELS, SCORES, threshold=0.5, n_boot=0)
    values = {name: m["value"] for name, m in result["metrics"].items()}
    # predictions: reals 0 0 0 1 (one false positive); fakes 1 1 0 1 (one false negative)
    assert result["confusion_matrix"] == [[3, 1], [1, 3]]
    assert values["accuracy"] == pytest.approx(6 / 8)
    assert values["precision"] == pytest.approx(3 / 4)
    assert values["recall"] == pytest.approx(3 / 4)
    assert values["f1"] == pytest.approx(3 / 4)
    assert values["accuracy_real"] == pytest.approx(3 / 4)
    assert values["accuracy_fake"] == pytest.approx(3 / 4)
    # AUC: of the 16 (fake, real) pairs the fake scores higher in 4 (0.9) + 3 (0.6) + 1 (0.3) + 3 (0.7) = 11
    assert values["roc_auc"] == pytest.approx(11 / 16)
    # AP: ranking 0.9F 0.8R 0.7F 0.6F 0.4R 0.35R 0.3F 0.1R -> precisions at each fake: 1, 2/3, 3/4, 4/7
    assert values["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)
    assert result["n_real"] == 4 and result["n_fake"] == 4


def test_count_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    predicted = (rng.random(500) < 0.5).astype(int)
    tp = np.array([(predicted & labels).sum()])
    fp = np.array([(predicted & (1 - labels)).sum()])
    fn = np.array([((1 - predicted) & labels).sum()])
    tn = np.array([((1 - predicted) & (1 - labels)).sum()])
    counted = _count_metrics(tp, fn, tn, fp)
    assert counted["f1"][0] == pytest.approx(f1_score(labels, predicted))
    assert counted["accuracy"][0] == pytest.approx((predicted == labels).mean())


def test_bootstrap_intervals_bracket_the_estimate_and_shrink_with_more_data():
    rng = np.random.default_rng(0)

    def sample(n):
        labels = np.r_[np.zeros(n), np.ones(n)].astype(int)
        return labels, labels + rng.normal(0, 0.8, 2 * n)

    small_labels, small_scores = sample(100)
    large_labels, large_scores = sample(2000)
    small = bootstrap_intervals(small_labels, small_scores, 0.5, n_boot=300)
    large = bootstrap_intervals(large_labels, large_scores, 0.5, n_boot=300)
    auc = roc_auc_score(small_labels, small_scores)
    assert small["roc_auc"][0] <= auc <= small["roc_auc"][1]
    for name in ("accuracy", "f1", "roc_auc", "average_precision"):
        assert large[name][1] - large[name][0] < small[name][1] - small[name][0]


def test_bootstrap_is_repeatable_under_a_seed():
    a = evaluate(LABELS, SCORES, 0.5, n_boot=100, seed=3)
    b = evaluate(LABELS, SCORES, 0.5, n_boot=100, seed=3)
    assert a == b


def test_threshold_is_chosen_to_separate_validation_classes():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([-3.0, -2.0, 1.0, 2.0, 3.0, 4.0])
    threshold = choose_threshold(labels, scores)
    assert 1.0 < threshold <= 2.0
    assert evaluate(labels, scores, threshold, n_boot=0)["metrics"]["accuracy"]["value"] == 1.0


def test_evaluation_needs_both_classes():
    with pytest.raises(ValueError, match="both real"):
        evaluate(np.zeros(4), np.zeros(4), 0.5)
