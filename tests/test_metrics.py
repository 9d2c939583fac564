"""Metrics against values computed by hand, and the bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from synthetic import CLEAN, write_results

import bench.metrics
from bench.leaderboard import write_leaderboard
from bench.metrics import (
    METRICS,
    REGISTRY,
    Accuracy,
    Proportion,
    Ranking,
    bootstrap_intervals,
    bootstrap_samples,
    choose_threshold,
    count_metrics,
    evaluate,
    metric_named,
    metrics_from_counts,
    point_metrics,
    register,
    resampled_counts,
    stratified_draws,
    unregister,
    wilson_interval,
)
from bench.records import load_records
from bench.training import predict_logits

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
    assert values["balanced_accuracy"] == pytest.approx(3 / 4)
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
    counted = count_metrics(tp, fn, tn, fp)
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


def test_resampling_does_not_depend_on_the_chunk_size(monkeypatch):
    labels = np.r_[np.zeros(300, int), np.ones(200, int)]
    scores = np.random.default_rng(0).normal(size=500) + labels
    whole = bootstrap_samples(labels, scores, 0.5, n_boot=50, seed=1)
    monkeypatch.setattr(bench.metrics, "CHUNK_ELEMENTS", 1200)  # two resamples per chunk
    chunked = bootstrap_samples(labels, scores, 0.5, n_boot=50, seed=1)
    for name in METRICS:
        np.testing.assert_array_equal(whole[name], chunked[name])


def test_threshold_is_chosen_to_separate_validation_classes():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([-3.0, -2.0, 1.0, 2.0, 3.0, 4.0])
    threshold = choose_threshold(labels, scores)
    assert 1.0 < threshold <= 2.0
    assert evaluate(labels, scores, threshold, n_boot=0)["metrics"]["accuracy"]["value"] == 1.0


def test_evaluation_needs_both_classes():
    with pytest.raises(ValueError, match="both real"):
        evaluate(np.zeros(4), np.zeros(4), 0.5)


def scikit_learn_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric of METRICS as scikit-learn computes it: the reference of the registry's declarations."""
    predicted = (np.asarray(scores, np.float64) >= threshold).astype(int)
    return {
        "accuracy": accuracy_score(labels, predicted),
        "precision": precision_score(labels, predicted, zero_division=0),
        "recall": recall_score(labels, predicted, zero_division=0),
        "f1": f1_score(labels, predicted, zero_division=0),
        "roc_auc": roc_auc_score(labels, scores),
        "average_precision": average_precision_score(labels, scores),
        "accuracy_real": accuracy_score(labels[labels == 0], predicted[labels == 0]),
        "accuracy_fake": accuracy_score(labels[labels == 1], predicted[labels == 1]),
        "balanced_accuracy": balanced_accuracy_score(labels, predicted),
    }


def test_point_metrics_equal_scikit_learns():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(300, int), np.ones(200, int)]
    scores = np.round(rng.normal(labels, 1.0), 1).astype(np.float32)  # with ties
    for threshold in (-1.0, 0.5, 9.0):
        assert point_metrics(labels, scores, threshold) == pytest.approx(
            scikit_learn_metrics(labels, scores, threshold), abs=1e-12, rel=0)
    one_class = point_metrics(np.zeros(5, int), scores[:5], 0.5)  # undefined: NaN, or 0 as scikit-learn's
    assert np.isnan([one_class[name] for name in ("roc_auc", "average_precision", "accuracy_fake",
                                                  "balanced_accuracy")]).all()
    assert one_class["precision"] == one_class["recall"] == one_class["f1"] == 0.0


@pytest.fixture(scope="module")
def cnn_scores(cifake, trained_cnn):
    """The trained CNN's fake logits on 1,000 real + 1,000 fake CIFAKE test images, and its threshold."""
    detector, threshold = trained_cnn
    images = [cifake.load(name).images[:1000] for name in ("cifake-real-test", "cifake-sd14-test")]
    scores = np.concatenate([predict_logits(detector, part, torch.device("cpu")) for part in images])
    return np.r_[np.zeros(1000, int), np.ones(1000, int)], scores.astype(np.float64), threshold


@pytest.mark.parametrize("ties", ["none", "rounded", "all-equal"])
def test_every_resample_matches_scikit_learn_on_real_scores(cnn_scores, ties):
    """Each resample's metrics (and, with every image once, the point values) equal scikit-learn's on it."""
    labels, scores, threshold = cnn_scores
    scores = {"none": scores, "rounded": np.round(scores, 1), "all-equal": np.zeros_like(scores)}[ties]
    ranking = Ranking.of(labels, scores)
    reals, fakes = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    real, fake = next(stratified_draws(len(reals), len(fakes), 4, np.random.default_rng(0)))
    real, fake = np.r_[real, np.arange(len(reals))[None]], np.r_[fake, np.arange(len(fakes))[None]]
    resampled = metrics_from_counts(ranking.values, *resampled_counts(ranking, real, fake), threshold)
    for row in range(len(real)):
        images = np.r_[reals[real[row]], fakes[fake[row]]]
        expected = scikit_learn_metrics(labels[images], scores[images], threshold)
        for name in METRICS:
            assert resampled[name][row] == pytest.approx(expected[name], abs=1e-12, rel=0), (name, row)
    if ties == "all-equal":
        assert set(resampled["roc_auc"]) == {0.5} and set(resampled["average_precision"]) == {0.5}


def test_evaluate_on_real_scores_reports_balanced_accuracy_and_bootstrap_intervals(cnn_scores):
    labels, scores, threshold = cnn_scores
    result = evaluate(labels, scores, threshold, n_boot=200)
    metrics = result["metrics"]
    assert set(metrics) == set(METRICS)
    for name, metric in metrics.items():
        assert metric["interval"] == "bootstrap-percentile"
        assert metric["ci"][0] <= metric["value"] <= metric["ci"][1], name
    assert metrics["roc_auc"]["value"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12, rel=0)
    balanced = (metrics["accuracy_real"]["value"] + metrics["accuracy_fake"]["value"]) / 2
    assert metrics["balanced_accuracy"]["value"] == pytest.approx(balanced)


def test_wilson_interval_matches_the_closed_form():
    # x = 0 of n = 10 at 95% (z = 1.95996): the upper end is z^2 / (n + z^2) = 3.84146 / 13.84146 = 0.277532
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(0.277532, abs=1e-6)
    # x = 5 of n = 10: centre 1/2, half-width z sqrt(1/40 + z^2/400) / (1 + z^2/10) = 0.364593 / 1.384146 = 0.263407
    low, high = wilson_interval(5, 10)
    assert (low + high) / 2 == pytest.approx(0.5) and high - 0.5 == pytest.approx(0.263407, abs=1e-6)


def test_proportions_at_zero_or_one_get_wilson_intervals():
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    scores = labels.astype(float)  # perfectly separated
    metrics = evaluate(labels, scores, 0.5, n_boot=100)["metrics"]
    # 100 of 100 right: Wilson's lower end is n / (n + z^2) = 100 / 103.8415 = 0.963006
    assert metrics["accuracy"]["interval"] == "wilson"
    assert metrics["accuracy"]["ci"] == pytest.approx([0.963006, 1.0], abs=1e-6)
    for name in ("precision", "recall", "accuracy_real", "accuracy_fake"):
        assert metrics[name]["interval"] == "wilson" and metrics[name]["ci"] == list(wilson_interval(50, 50))
    assert metrics["roc_auc"] == {"value": 1.0, "ci": [1.0, 1.0], "interval": "bootstrap-percentile"}

    nothing_called_fake = evaluate(labels, scores, 2.0, n_boot=100)["metrics"]
    assert nothing_called_fake["recall"]["ci"] == list(wilson_interval(0, 50))
    assert nothing_called_fake["recall"]["ci"][1] > 0
    assert nothing_called_fake["precision"] == {"value": 0.0, "ci": None, "interval": None}


def test_without_resampling_there_are_no_intervals():
    metrics = evaluate(LABELS, SCORES, 0.5, n_boot=0)["metrics"]
    assert all(metric["ci"] is None and metric["interval"] is None for metric in metrics.values())


def test_an_interval_that_leaves_out_its_own_value_is_not_reported():
    """Fakes all scored below all reals (as under a strong attack): every resample with a duplicated image has tied
    scores, which raise average precision, so all resamples lie above its value and no bootstrap interval made from
    them (percentile, basic or BCa) contains it."""
    labels = np.r_[np.zeros(300, int), np.ones(300, int)]
    scores = np.r_[np.linspace(1.0, 2.0, 300), np.linspace(-2.0, -1.0, 300)]
    samples = bootstrap_samples(labels, scores, 0.0, n_boot=200)
    result = evaluate(labels, scores, 0.0, n_boot=200)["metrics"]
    assert samples["average_precision"].min() > result["average_precision"]["value"]  # the case at hand
    assert result["average_precision"] == {"value": result["average_precision"]["value"], "ci": None,
                                           "interval": None}
    for name, metric in result.items():
        assert metric["ci"] is None or metric["ci"][0] <= metric["value"] <= metric["ci"][1], name


def test_point_metrics_compare_scores_with_the_threshold_as_float64_like_the_bootstrap():
    """A float32 score just below a float64 threshold that rounds to it in float32: the same side for both."""
    score = np.float32(0.1)
    threshold = float(np.nextafter(float(score), 1.0))  # above the score, but float32(threshold) == score
    assert np.float32(threshold) == score
    labels = np.array([0, 0, 1, 1])
    scores = np.array([score, -1.0, 1.0, 2.0], dtype=np.float32)
    point = point_metrics(labels, scores, threshold)
    assert point["accuracy_real"] == point["accuracy"] == 1.0  # the real just below the threshold is called real
    assert evaluate(labels, scores, threshold, n_boot=0)["confusion_matrix"] == [[2, 0], [0, 2]]
    ranking = Ranking.of(labels, scores)  # every image once, counted as the bootstrap counts a resample
    counted = metrics_from_counts(ranking.values, *resampled_counts(ranking, np.arange(2)[None], np.arange(2)[None]),
                                  threshold)
    assert {name: counted[name][0] for name in METRICS} == pytest.approx(point)


def test_every_declared_metric_says_what_reports_need():
    assert list(METRICS) == ["accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "accuracy_real",
                             "accuracy_fake", "balanced_accuracy"]  # the column order of every published CSV
    for name, declared in REGISTRY.items():
        assert declared.name == name and declared.label and type(declared).__doc__, name
    assert REGISTRY["evasion_rate"].higher_is_better is False and "evasion_rate" not in METRICS
    assert [name for name, m in REGISTRY.items() if m.flags_below_chance] == ["roc_auc"]
    assert REGISTRY["roc_auc"].below_chance(0.45, 0.49) and not REGISTRY["roc_auc"].below_chance(0.45, 0.51)
    assert REGISTRY["average_precision"].chance_level(300, 100) == 0.25
    with pytest.raises(KeyError, match="unknown metric 'auc': choose from accuracy, precision"):
        metric_named("auc")
    with pytest.raises(ValueError, match="declared twice"):
        register(type("Again", (Accuracy,), {}))


def test_a_declared_metric_flows_into_the_bootstrap_records_and_the_rendered_leaderboard(tmp_path):
    @register
    class Specificity(Proportion):
        """Share of the reals called real (as accuracy_real: here to check that a declaration is all it takes)."""

        name, label, column = "specificity", "Spec", 9

        def proportion(self, c):
            return c.tn, c.tn + c.fp

    try:
        write_results(tmp_path, perturbations=(CLEAN,), n_boot=50)
        records = list(load_records(tmp_path).values())
        assert all(r.metrics["specificity"] == r.metrics["accuracy_real"] for r in records)  # evaluate() and records
        paths = write_leaderboard(records, tmp_path, "a new metric")
        cells = pd.read_csv(paths["csv"])
        for suffix in ("", "_ci_low", "_ci_high", "_std"):
            assert cells[f"specificity{suffix}"].tolist() == pytest.approx(cells[f"accuracy_real{suffix}"].tolist())
        every = paths["markdown"].read_text().split("## Every cell")[1]
        header = next(line for line in every.splitlines() if line.startswith("| Detector"))
        columns = [c.strip() for c in header.strip("|").split("|")]
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in every.splitlines()
                if line.startswith("| a ") or line.startswith("| b ")]
        assert "Spec" in columns and rows
        assert all(row[columns.index("Spec")] == row[columns.index("Acc real")] for row in rows)
        assert 'data-key="specificity"' in paths["html"].read_text()
    finally:
        unregister("specificity")
    assert "specificity" not in METRICS
