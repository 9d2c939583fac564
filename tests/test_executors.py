"""Executors on real CIFAKE subsets: local, local --parallel 2 and Ray give the same records; a Ray worker
killed mid-job is retried; a dry run trains and writes nothing; a resumed run recomputes nothing."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
import types

import pandas as pd
import pytest
from conftest import linked_sources

import bench.execute
import bench.executors
import bench.registry
from bench.executors import (
    EXECUTORS,
    ExecutorOptions,
    ProcessExecutor,
    RayExecutor,
    SerialExecutor,
    make_executor,
    register_executor,
)
from bench.runner import Runner
from bench.suite import load_suite

SUITE = """
name: tiny-executors
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
  ddpm-cifar10: {importer: folder, path: ddpm-cifar10/FAKE, split: test, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 300}]
test: {real: cifake-real-test, fake: ["*"], limit: 200}
detectors: [{name: lenet}, {name: cifake-cnn}]
seeds: [0, 1]
recipe: {epochs: 1}
bootstrap: 50
"""


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(SUITE))
    return load_suite(path)


def _run(executor, suite, cifake_dir, data_root, tmp_path, name):
    cache = tmp_path / f"cache-{name}"
    if not cache.exists():
        linked_sources(cifake_dir, cache)
    runner = Runner(cache, tmp_path / name, data_root, device="cpu", progress=False, executor=executor, threads=1)
    return runner.run(suite)


def _numbers(summary):
    return {r.key: (r.metrics, r.training.threshold, r.training.checkpoint_sha256) for r in summary.records}


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# Ray's copy of the comparison is slow here (a Ray instance and its workers on two busy cores); the default run
# still sends jobs through Ray in test_a_ray_worker_killed_mid_job_is_retried_and_every_record_is_written.
@pytest.mark.parametrize("name", ["parallel", pytest.param("ray", marks=pytest.mark.slow)])
def test_an_executor_gives_the_serial_records_and_a_resumed_run_recomputes_nothing(
    name, suite, cifake_dir, data_root, tmp_path, request, monkeypatch
):
    if name == "ray":
        request.getfixturevalue("ray_instance")
    suite = suite.with_overrides(detectors="lenet")  # two jobs: one per seed
    executors = {"serial": SerialExecutor(), name: {"parallel": ProcessExecutor(2), "ray": RayExecutor()}[name]}
    runs = {n: _run(e, suite, cifake_dir, data_root, tmp_path, n) for n, e in executors.items()}
    assert len(runs["serial"].records) == 2 * 2  # seeds x test sources
    assert _numbers(runs[name]) == _numbers(runs["serial"])
    boards = [pd.read_csv(tmp_path / n / "leaderboard.csv").drop(columns="train_seconds") for n in (name, "serial")]
    pd.testing.assert_frame_equal(*boards)  # the same leaderboard but for the measured training times

    def no_work(*args, **kwargs):
        raise AssertionError("a resumed run must not run a job")

    monkeypatch.setattr(bench.executors, "attempt", no_work)
    again = _run(executors[name], suite, cifake_dir, data_root, tmp_path, name)
    assert not again.computed and len(again.skipped) == 4


def _kill_once(title: str, killed: list[int], stop: threading.Event) -> None:
    """Kill (SIGKILL) the first process whose command line (Ray sets it to ``ray::<task>``) starts with ``title``."""
    from pathlib import Path

    while not stop.is_set() and not killed:
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(title.encode()):
                time.sleep(1.0)  # let it get into the job
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
                return
        time.sleep(0.1)


def test_a_ray_worker_killed_mid_job_is_retried_and_every_record_is_written(
    suite, cifake_dir, data_root, tmp_path, ray_instance
):
    one_job = suite.with_overrides(detectors="cifake-cnn", seeds=[0])
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_once, args=("ray::attempt", killed, stop), daemon=True)
    killer.start()
    try:
        summary = _run(RayExecutor(), one_job, cifake_dir, data_root, tmp_path, "killed")
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was seen running the job"
    assert len(summary.computed) == 2 and len(summary.records) == 2


def test_dry_run_trains_nothing_and_writes_nothing(suite, cifake_dir, data_root, tmp_path, monkeypatch):
    cache = linked_sources(cifake_dir, tmp_path / "cache")
    runner = Runner(cache, tmp_path / "results", data_root, device="cpu", progress=False)
    cold = runner.dry_run(suite)  # ddpm-cifar10 is not imported yet: nothing is imported to find out
    assert cold.plan is None and any(s.name == "ddpm-cifar10" and s.action == "import" for s in cold.sources)
    assert "ddpm-cifar10" not in os.listdir(cache / "sources")

    runner.preparer.prepare(suite)  # the sources are cached now: a full plan with an estimate

    def no_training(*args, **kwargs):
        raise AssertionError("a dry run must not train")

    monkeypatch.setattr(bench.execute, "fit", no_training)
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    warm = runner.dry_run(suite)
    assert len(warm.plan.jobs) == 4 and len(warm.pending) == 4 and not warm.recorded
    assert set(warm.estimate.rates) == {"lenet", "cifake-cnn"} and warm.estimate.total > 0
    assert "4 jobs (0 done), 8 cells (0 recorded)" in warm.summary()
    assert "one job at a time" not in warm.summary()
    pair = Runner(cache, tmp_path / "results", data_root, device="cpu", progress=False,
                  executor=ProcessExecutor(2)).dry_run(suite)
    costs = sorted(c.total for c in pair.estimate.costs.values())
    assert max(costs) <= pair.estimate.wall < pair.estimate.total  # two workers: shorter, never below the longest job
    assert "one job at a time, about" in pair.summary() and "with 2 at once" in pair.summary()
    assert not (tmp_path / "results").exists()
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before


def test_executors_are_a_registry_that_the_command_line_offers():
    assert make_executor("local") == SerialExecutor()
    assert make_executor("local", ExecutorOptions(parallel=3)) == ProcessExecutor(3)
    assert make_executor("ray", ExecutorOptions(parallel=2, gpus_per_job=0.5)) == RayExecutor(None, 2, 1, 0.5)

    @register_executor("inline-test")
    def inline(options: ExecutorOptions) -> SerialExecutor:
        """Jobs in this process, for a test."""
        return SerialExecutor()

    try:
        assert make_executor("inline-test") == SerialExecutor()
        assert EXECUTORS.description("inline-test") == "Jobs in this process, for a test."
        with pytest.raises(bench.registry.UnknownPluginError, match="unknown executor 'locall'. Did you mean 'local'"):
            make_executor("locall")
    finally:
        EXECUTORS.unregister("inline-test")


def test_an_executor_runs_the_work_it_is_given_and_a_job_that_raises_becomes_a_failure():
    jobs = [types.SimpleNamespace(key=str(i), label=f"job {i}") for i in range(3)]

    def work(suite, job, data, settings):
        if job.key == "1":
            raise ValueError("diverged\nmore detail")
        return f"ran {job.label} on {data}"

    started = []
    outcomes = list(SerialExecutor().run(work, None, jobs, "data", None, started.append))
    assert started == jobs
    assert outcomes[0] == "ran job 0 on data" and outcomes[2] == "ran job 2 on data"
    assert outcomes[1] == bench.executors.JobFailure("1", "job 1", "ValueError: diverged")
