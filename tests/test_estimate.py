"""The arithmetic of run estimates, checked against cases worked out by hand."""

import pytest

from bench.estimate import Throughput, job_cost, makespan, score_passes
from bench.recipe import Recipe
from bench.suite import PerturbationEntry

CLEAN = PerturbationEntry(name="clean")
FGSM = PerturbationEntry(name="fgsm", params={"eps": 2 / 255})
JPEG = PerturbationEntry(name="jpeg", params={"quality": 50})


def test_makespan_hands_each_job_to_the_first_free_worker():
    assert makespan([3, 3, 2, 2], 2) == 5  # 3+2 on each worker
    assert makespan([5, 1, 1, 1], 2) == 5  # the long job bounds it; the short ones share the other worker
    assert makespan([1, 2, 3], 1) == 6 and makespan([1, 2, 3], 5) == 3
    assert makespan([], 3) == 0


def test_each_test_source_is_scored_once_per_perturbation():
    # two fake sources, clean: the reals once, each fake source once
    assert sorted(score_passes(100, [("a", 10, CLEAN), ("b", 20, CLEAN)])) == [(10, 0), (20, 0), (100, 0)]
    # an attack: reals and fakes under FGSM (one step each), plus the fakes' clean scores for the evasion rate
    assert sorted(score_passes(100, [("a", 10, FGSM)])) == [(10, 0), (10, 1), (100, 1)]
    # clean and JPEG cells of one source: the clean fakes are not scored twice
    assert sorted(score_passes(100, [("a", 10, CLEAN), ("a", 10, JPEG)])) == [(10, 0), (10, 0), (100, 0), (100, 0)]


def test_job_cost_adds_training_validation_and_scoring():
    rate = Throughput(train=100, score=1000)
    cost = job_cost([Recipe(epochs=2, val_fraction=0.1)], 1000, [(100, 0), (10, 1)], rate)
    assert cost.train == pytest.approx(2 * 900 / 100 + 2 * 100 / 1000)  # 18 s of steps, 0.2 s of validation
    assert cost.score == pytest.approx(100 / 1000 + 10 * (1 / 1000 + 1 / 100))  # forward passes, one attack step
    assert job_cost([], 1000, [], rate).total == 0  # a cached checkpoint with nothing left to score
