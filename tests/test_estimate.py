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


def test_the_fastest_timed_step_counts_so_a_stall_does_not(monkeypatch):
    import bench.estimate

    durations = iter([9.0, 0.2, 5.0, 0.1, 0.3] + [0.4] * 20)  # the warm-up, then timed steps (one stalled)
    clock = [0.0]

    def step():
        clock[0] += next(durations)

    monkeypatch.setattr(bench.estimate.time, "perf_counter", lambda: clock[0])
    assert bench.estimate._fastest(step) == pytest.approx(0.1)  # not the warm-up, not the stall
    # steps that took longer than the timing budget in all: just the least number of them
    slow = iter([2.0, 3.0, 1.5, 2.5, 0.01])
    monkeypatch.setattr(bench.estimate.time, "perf_counter", lambda: clock[0])
    clock[0] = 0.0

    def slow_step():
        clock[0] += next(slow)

    assert bench.estimate._fastest(slow_step, least=3) == pytest.approx(1.5)


def _zoo_jobs_and_sources():
    from bench.plan import outline
    from bench.prepare import SourceStatus
    from bench.suite import load_suite

    suite = load_suite("zoo-cpu")
    sources = [SourceStatus(name, "folder", "import", count=20000) for name in suite.used_sources()]
    return suite, outline(suite), sources


def test_a_cached_checkpoint_costs_no_training_and_a_recorded_cell_no_scoring(monkeypatch):
    import dataclasses

    import bench.estimate

    timed = []
    monkeypatch.setattr(bench.estimate, "throughput",
                        lambda name, *args: timed.append(name) or Throughput(train=100, score=1000))
    suite, jobs, sources = _zoo_jobs_and_sources()
    fresh = bench.estimate.estimate(suite, jobs, sources, "cpu")
    assert len(fresh.costs) == len(jobs) == 21 and sorted(timed) == sorted({d.name for d in suite.detectors})
    first = fresh.costs[0]
    # 5,000 training images per class, 3 epochs, 10 % for validation; 2,000 reals and 19 x 2,000 fakes scored
    assert first.train == pytest.approx(3 * 9000 / 100 + 3 * 1000 / 1000)
    assert len(jobs[0].cells) == 19 and first.score == pytest.approx((1 + 19) * 2000 / 1000)
    cached = [dataclasses.replace(job, recipes=()) for job in jobs]  # every checkpoint cached
    warm = bench.estimate.estimate(suite, cached, sources, "cpu")
    assert warm.train == 0 and warm.score == pytest.approx(fresh.score)
    done = [dataclasses.replace(job, recipes=(), cells=()) for job in jobs]  # everything recorded: nothing timed
    timed.clear()
    idle = bench.estimate.estimate(suite, done, sources, "cpu")
    assert idle.total == 0 and not idle.costs and not timed and idle.line() == "nothing to train or score"


def test_a_job_whose_source_counts_are_unknown_is_counted_not_estimated(monkeypatch):
    import dataclasses

    import bench.estimate

    monkeypatch.setattr(bench.estimate, "throughput", lambda *args: Throughput(train=100, score=1000))
    suite, jobs, sources = _zoo_jobs_and_sources()
    unknown = [dataclasses.replace(s, count=None) if s.name == "zoo-dcgan" else s for s in sources]
    result = bench.estimate.estimate(suite, jobs, unknown, "cpu")
    assert result.unknown == 21 and not result.costs  # every job scores zoo-dcgan
    assert result.line() == "21 jobs, not estimated before their data is imported"


def test_each_attack_step_a_perturbation_declares_costs_a_training_step():
    pgd = PerturbationEntry(name="pgd", params={"eps": 2 / 255, "steps": 7})
    assert sorted(score_passes(100, [("a", 10, pgd)])) == [(10, 0), (10, 7), (100, 7)]
