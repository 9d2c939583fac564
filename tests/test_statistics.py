"""Aggregation over seeds, paired comparisons, Holm, the t-type test and DeLong's test: by hand, against scipy, on
synthetic scores (binormal logits; no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm, t

from bench import statistics
from bench.metrics import METRICS, bootstrap_intervals, evaluate
from bench.statistics import (
    ResampleCache,
    delong_test,
    holm,
    image_resamples,
    paired_bootstrap,
    seed_bootstrap,
    seed_difference_test,
    seed_mean_interval,
    seed_values,
    shared_image_variance,
    source_resamples,
    t_test,
)

# 3 fakes, 2 reals; two detectors on the same 5 images.
HAND_LABELS = np.array([1, 1, 1, 0, 0])
HAND_A = np.array([0.9, 0.6, 0.3, 0.5, 0.2])
HAND_B = np.array([0.8, 0.4, 0.35, 0.6, 0.1])
N = 1000  # test images per class


@pytest.fixture(scope="module")
def scores() -> tuple[np.ndarray, np.ndarray, float]:
    """A detector's float32 logits on N reals and N fakes (binormal, AUC about 0.84), and its threshold."""
    labels = np.r_[np.zeros(N, int), np.ones(N, int)]
    return labels, (1.4 * labels + np.random.default_rng(0).normal(0, 1, 2 * N)).astype(np.float32), 0.7


def noisy(scores: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Another training seed of the detector: the same scores plus noise of ``scale`` times their spread."""
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
    assert result["ci"] == pytest.approx([1 / 6 - half, 1 / 6 + half]) and result["note"] is None
    paired = paired_bootstrap([(HAND_LABELS, HAND_A, 0.5)], [(HAND_LABELS, HAND_B, 0.5)], n_boot=200)
    assert paired["metrics"]["roc_auc"]["difference"] == pytest.approx(1 / 6)


def test_delong_refuses_a_class_of_one_image():
    labels = np.array([1, 1, 1, 0])
    result = delong_test(labels, [0.9, 0.6, 0.3, 0.5], [0.8, 0.4, 0.35, 0.6])
    assert result["auc_a"] == pytest.approx(2 / 3) and result["ci"] is None
    assert math.isnan(result["p_value"]) and math.isnan(result["se"]) and result["note"].startswith("n/a")


def test_auc_is_mann_whitney_u_over_pairs_with_ties(scores):
    labels, logits, threshold = scores
    rounded = np.round(logits, 1)  # many ties
    u = mannwhitneyu(rounded[labels == 1], rounded[labels == 0]).statistic
    auc = u / ((labels == 0).sum() * (labels == 1).sum())
    assert delong_test(labels, rounded, rounded)["auc_a"] == pytest.approx(auc, abs=1e-12)
    assert evaluate(labels, rounded, threshold, n_boot=0)["metrics"]["roc_auc"]["value"] == pytest.approx(auc)
    assert seed_values([(labels, rounded, threshold)])["roc_auc"][0] == pytest.approx(auc, abs=1e-12)


def test_seed_values_equal_scikit_learn(scores):
    labels, logits, threshold = scores
    values = seed_values([(labels, logits, threshold), (labels, noisy(logits, 0.5, 1), threshold)])
    for i, run_scores in enumerate([logits, noisy(logits, 0.5, 1)]):
        point = evaluate(labels, run_scores, threshold, n_boot=0)["metrics"]
        for name in METRICS:
            assert values[name][i] == pytest.approx(point[name]["value"], abs=1e-12)


def test_t_test_is_students_t_with_one_estimated_variance_and_normal_with_a_known_one():
    student = t_test(1.0, [(0.25, 2)])
    assert student["p_value"] == pytest.approx(2 * t.sf(2.0, 2), abs=1e-4)
    assert student["ci"] == pytest.approx([1 - t.ppf(0.975, 2) * 0.5, 1 + t.ppf(0.975, 2) * 0.5], abs=1e-3)
    normal = t_test(1.0, [(0.25, math.inf)])
    assert normal["p_value"] == pytest.approx(2 * norm.sf(2.0)) and normal["se"] == 0.5
    assert normal["ci"] == pytest.approx([1 - norm.ppf(0.975) * 0.5, 1 + norm.ppf(0.975) * 0.5], abs=1e-6)
    mixed = t_test(1.0, [(0.125, 2), (0.125, math.inf)])  # between the two
    assert normal["p_value"] < mixed["p_value"] < student["p_value"]
    assert t_test(0.0, [])["p_value"] == 1.0 and t_test(0.1, [(0.0, 2)])["p_value"] == 0.0
    tiny = t_test(1.0, [(0.04, 99)])  # t = 5: far below a bootstrap p-value's floor of 2 / (resamples + 1)
    assert tiny["p_value"] == pytest.approx(2 * t.sf(5.0, 99), rel=0.1) and tiny["p_value"] < 1e-5


def test_holm_by_hand():
    # sorted 0.01 0.02 0.04 0.30 -> x4 x3 x2 x1 = 0.04 0.06 0.08 0.30, monotone; NaN stays out of the family
    adjusted = holm([0.04, 0.30, np.nan, 0.01, 0.02])
    assert adjusted[[3, 4, 0, 1]] == pytest.approx([0.04, 0.06, 0.08, 0.30]) and np.isnan(adjusted[2])
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])


def test_paired_test_tells_apart_detectors_whose_marginal_intervals_overlap(scores):
    """The detector against itself with every fake's logit lowered by 5% of the logits' spread: slightly worse
    (AUC about 0.01 lower) on the same images, well inside the marginal intervals' width (about 0.035)."""
    labels, logits, threshold = scores
    worse = logits - 0.05 * logits.std() * labels
    marginal_a = evaluate(labels, logits, threshold)["metrics"]["roc_auc"]["ci"]
    marginal_b = evaluate(labels, worse, threshold)["metrics"]["roc_auc"]["ci"]
    assert marginal_b[1] > marginal_a[0]  # the marginal intervals overlap
    paired = paired_bootstrap([(labels, logits, threshold)], [(labels, worse, threshold)])["metrics"]["roc_auc"]
    assert paired["ci"][0] > 0 and paired["p_value"] < 1e-3 < 1 / 1000 * 2  # below a bootstrap p-value's floor
    delong = delong_test(labels, logits, worse)
    assert delong["difference"] == pytest.approx(paired["difference"])
    assert delong["ci"][0] > 0 and delong["p_value"] < 0.01
    assert paired["se"] == pytest.approx(delong["se"], rel=0.2)  # bootstrap and DeLong standard errors agree


def test_paired_test_does_not_tell_apart_detectors_that_are_equally_good(scores):
    """The same scores shuffled within each class: equally good overall, wrong on different images."""
    labels, logits, threshold = scores
    rng = np.random.default_rng(0)
    shuffled = logits.copy()
    for label in (0, 1):
        images = np.flatnonzero(labels == label)
        shuffled[images] = logits[rng.permutation(images)]
    paired = paired_bootstrap([(labels, logits, threshold)], [(labels, shuffled, threshold)])["metrics"]
    for name in ("accuracy", "balanced_accuracy", "roc_auc", "average_precision"):
        assert paired[name]["difference"] == pytest.approx(0, abs=1e-12)
        assert paired[name]["ci"][0] < 0 < paired[name]["ci"][1] and paired[name]["p_value"] > 0.5
    assert delong_test(labels, logits, shuffled)["p_value"] == pytest.approx(1)


def test_runs_against_themselves_differ_by_exactly_zero(scores):
    labels, logits, threshold = scores
    runs = [(labels, logits, threshold), (labels, noisy(logits, 0.5, seed=1), threshold)]
    result = paired_bootstrap(runs, runs, n_boot=200)
    assert result["paired_seeds"] is True and result["seeds_covered"] is True
    for name in METRICS:
        assert result["metrics"][name] | {"se": 0.0} == {"difference": 0.0, "se": 0.0, "ci": [0.0, 0.0],
                                                         "p_value": 1.0}
    unpaired = paired_bootstrap(runs, runs[:1], n_boot=200)
    assert unpaired["paired_seeds"] is False
    assert unpaired["metrics"]["roc_auc"]["difference"] < 0  # the noisy second seed pulls a's mean down
    with pytest.raises(ValueError, match="as many"):
        paired_bootstrap(runs, runs[:1], n_boot=200, paired=True)


def test_one_seed_gives_the_image_bootstrap(scores):
    labels, logits, threshold = scores
    result = seed_bootstrap([(labels, logits, threshold)], n_boot=300, seed=4)
    images_only = bootstrap_intervals(labels, logits, threshold, n_boot=300, seed=4)
    point = evaluate(labels, logits, threshold, n_boot=0)["metrics"]
    for name in METRICS:
        metric = result["metrics"][name]
        assert metric["ci"] == list(images_only[name]) and metric["interval"] == "bootstrap-percentile"
        assert metric["mean"] == metric["per_seed"][0] == pytest.approx(point[name]["value"], abs=1e-12)
        assert np.isnan(metric["std"])
    assert result["n_seeds"] == 1 and "only" in result["bootstrap"]["covers"]


def test_the_interval_over_three_seeds_spans_them_and_is_student_t_when_seeds_dominate(scores):
    labels, logits, threshold = scores
    runs = [(labels, noisy(logits, scale, seed), threshold) for seed, scale in enumerate([0.0, 0.8, 1.6])]
    result = seed_bootstrap(runs, n_boot=500)
    auc = result["metrics"]["roc_auc"]
    assert auc["per_seed"] == pytest.approx([evaluate(*run, n_boot=0)["metrics"]["roc_auc"]["value"] for run in runs])
    assert auc["mean"] == pytest.approx(np.mean(auc["per_seed"])) and auc["std"] == pytest.approx(
        np.std(auc["per_seed"], ddof=1))
    assert auc["ci"][0] < min(auc["per_seed"]) and max(auc["per_seed"]) < auc["ci"][1]  # a percentile one would not
    student = t.ppf(0.975, 2) * auc["std"] / math.sqrt(3)
    assert student <= (auc["ci"][1] - auc["ci"][0]) / 2 <= 1.1 * math.hypot(student, 3 * math.sqrt(
        auc["image_variance"]))
    one_seed = seed_bootstrap(runs[1:2], n_boot=500)["metrics"]["roc_auc"]["ci"]
    assert auc["ci"][1] - auc["ci"][0] > 2 * (one_seed[1] - one_seed[0])
    assert auc["interval"] == "t" and "seeds" in result["bootstrap"]["covers"]


def test_the_image_part_leaves_out_what_the_seeds_do_not_share(scores):
    labels, logits, threshold = scores
    alike = [(labels, logits, threshold)] * 3  # seeds that agree on every image: all image variation is shared
    drawn = image_resamples([alike], n_boot=300)[0]["roc_auc"]
    values = seed_values(alike)["roc_auc"]
    assert drawn.shape == (300, 3) and shared_image_variance(drawn, values) == pytest.approx(drawn[:, 0].var(ddof=1))
    apart = [(labels, noisy(logits, 1.0, seed), threshold) for seed in range(3)]  # much of it their own
    drawn, values = image_resamples([apart], n_boot=300)[0]["roc_auc"], seed_values(apart)["roc_auc"]
    assert 0 < shared_image_variance(drawn, values) < 0.8 * drawn.mean(1).var(ddof=1)


def test_seed_difference_test_pairs_seeds_or_not():
    a, b = np.array([0.80, 0.85, 0.90]), np.array([0.78, 0.83, 0.88])  # b = a - 0.02 exactly, seed by seed
    paired = seed_difference_test(a, b, 1e-6, paired=True)
    unpaired = seed_difference_test(a, b, 1e-6, paired=False)
    assert paired["difference"] == unpaired["difference"] == pytest.approx(0.02)
    assert paired["p_value"] < 0.01 < 0.5 < unpaired["p_value"]  # pairing removes the seeds' common spread
    interval = seed_mean_interval(a, 0.0)
    assert interval["ci"] == pytest.approx([0.85 - t.ppf(0.975, 2) * 0.05 / math.sqrt(3),
                                            min(1.0, 0.85 + t.ppf(0.975, 2) * 0.05 / math.sqrt(3))], abs=1e-3)
    with pytest.raises(ValueError, match="as many"):
        seed_difference_test(a, b[:2], paired=True)


def test_runs_must_share_the_test_images():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    with pytest.raises(ValueError, match="same test images"):
        seed_bootstrap([(labels, scores, 0.5), (labels[::-1], scores, 0.5)])
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap([(labels, scores, 0.5)], [(labels[:3], scores[:3], 0.5)])
    with pytest.raises(ValueError, match="at least 2 resamples"):
        seed_bootstrap([(labels, scores, 0.5)], n_boot=1)


def test_each_run_is_resampled_once_and_shared(monkeypatch):
    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(80, int), np.ones(60, int)]
    runs = [(labels, rng.normal(labels, 1.0), 0.5) for _ in range(3)]
    fresh = image_resamples([runs[:2], runs[2:]], 40, 7)
    calls = []
    counted = statistics.bootstrap_samples
    monkeypatch.setattr(statistics, "bootstrap_samples", lambda *args: calls.append(args) or counted(*args))
    cache = ResampleCache()
    shared = image_resamples([runs[:2], runs[2:]], 40, 7, cache)
    for before, after in zip(fresh, shared, strict=True):
        assert all(np.array_equal(before[name], after[name]) for name in METRICS)  # the same draws, bit for bit
    paired_bootstrap(runs[:1], runs[1:2], 40, 0.95, 7, cache=cache)
    seed_bootstrap(runs, 40, 0.95, 7, cache)
    assert len(calls) == 3  # once per run, however many functions use it
    assert len(image_resamples([runs[:1]], 40, 8, cache)[0]["roc_auc"]) == 40 and len(calls) == 4  # another seed


def test_source_resamples_share_the_reals_and_draw_each_sources_fakes():
    rng = np.random.default_rng(6)
    reals = rng.normal(0, 1, 100)
    run_a = (np.r_[np.zeros(100, int), np.ones(50, int)], np.r_[reals, rng.normal(1, 1, 50)], 0.5)
    run_b = (np.r_[np.zeros(100, int), np.ones(80, int)], np.r_[reals, rng.normal(2, 1, 80)], 0.5)
    draws = source_resamples({"a": ("a", [run_a]), "b": ("b", [run_b]), "a again": ("a", [run_a])}, 300, 0,
                             names=["roc_auc"])
    assert np.array_equal(draws["a"]["roc_auc"], draws["a again"]["roc_auc"])  # one draw per source
    assert draws["a"]["roc_auc"].shape == (300, 1)
    for key, run in (("a", run_a), ("b", run_b)):  # centred on the observed AUC
        observed = evaluate(*run, n_boot=0)["metrics"]["roc_auc"]["value"]
        assert abs(draws[key]["roc_auc"].mean() - observed) < 0.01
    correlation = np.corrcoef(draws["a"]["roc_auc"][:, 0], draws["b"]["roc_auc"][:, 0])[0, 1]
    assert correlation > 0.2  # the shared reals tie the two sources' resamples together
    with pytest.raises(ValueError, match="share their real test images"):
        source_resamples({"a": ("a", [run_a]), "c": ("c", [(np.r_[np.zeros(90, int), np.ones(60, int)],
                                                             np.r_[reals[:90], rng.normal(1, 1, 60)], 0.5)])}, 10)
