"""The runner end to end on real CIFAKE subsets: records, leaderboard, resume, and what keys cover."""

from __future__ import annotations

import json
import shutil
import textwrap

import pandas as pd
import pytest
import torch
from conftest import linked_sources

import bench.estimate
import bench.runner
import bench.training
from bench.runner import Runner
from bench.suite import Suite, load_suite

SUITE = """
name: tiny
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
  ddpm-cifar10: {importer: folder, path: ddpm-cifar10/FAKE, split: test, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 300}]
test: {real: cifake-real-test, fake: ["*"], limit: 200}
detectors:
  - {name: lenet, grid: {lr: [0.001, 0.003]}}
recipe: {epochs: 1}
perturbations: [clean, {name: jpeg, quality: 50}]
bootstrap: 50
"""


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(SUITE))
    return load_suite(path)


@pytest.fixture
def data_dir(tmp_path, cifake_dir):
    """A private copy of the CIFAKE cache, so checkpoints made here stay here."""
    return linked_sources(cifake_dir, tmp_path / "cache")


def test_run_writes_records_and_a_leaderboard_then_resumes_without_recomputing(
    suite, data_dir, data_root, tmp_path, monkeypatch
):
    results = tmp_path / "results"
    first = Runner(data_dir, results, data_root, device="cpu", progress=False).run(suite)
    assert len(first.computed) == 4 and not first.skipped  # 1 detector x 2 test sources x 2 perturbations
    record = json.loads(first.computed[0].read_text())
    assert record["key"] == first.computed[0].stem
    assert record["train"]["real"]["count"] == 300 and record["train"]["fake"]["count"] == 300
    assert record["provenance"]["seed"] == 0 and record["provenance"]["versions"]["torch"]
    assert record["provenance"]["hardware"]["device"] == "cpu"
    assert len(record["training"]["grid"]) == 2  # both learning rates trained, the better one on validation kept
    assert record["training"]["n_val"] == 60
    assert record["test_images_in_training"] == {"real": 0, "fake": 0}  # the suite deduplicates
    by_test = {(r.test.name, r.perturbation.label): r for r in first.records}
    assert by_test[("ddpm-cifar10", "clean")].n_fake == 129
    assert by_test[("cifake-sd14-test", "clean")].n_fake == 200
    # the reals are shared by both test pairs, scored once
    assert by_test[("ddpm-cifar10", "clean")].metrics["accuracy_real"].value == (
        by_test[("cifake-sd14-test", "clean")].metrics["accuracy_real"].value
    )
    markdown = first.leaderboard["markdown"].read_text()
    assert "tested on ddpm-cifar10 (200 real vs 129 fake)" in markdown
    assert "| lenet" in markdown and "jpeg(quality=50)" in markdown
    assert len(first.leaderboard["csv"].read_text().splitlines()) == 5

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed run must not train")

    monkeypatch.setattr(bench.training, "train_detector", no_training)
    monkeypatch.setattr(bench.runner, "run_job", no_training)
    cards = {path: path.stat().st_mtime_ns for path in (results / "figures").glob("source-*.png")}
    assert len(cards) == 3  # the real test images and both fake test sources
    (results / "figures" / "source-ddpm-cifar10.png").unlink()
    again = Runner(data_dir, results, data_root, device="cpu", progress=False).run(suite)
    assert not again.computed and len(again.skipped) == 4
    assert again.leaderboard["markdown"].read_text() == markdown
    redrawn = {path for path, mtime in cards.items() if path.stat().st_mtime_ns != mtime}
    assert redrawn == {results / "figures" / "source-ddpm-cifar10.png"}  # the others are drawn from the same pixels


def test_a_lost_record_is_rescored_from_the_cached_checkpoint(suite, data_dir, data_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    first = Runner(data_dir, results, data_root, device="cpu", progress=False).run(suite)
    lost = first.computed[0]
    expected = json.loads(lost.read_text())
    lost.unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("the checkpoint is cached: nothing to train")

    monkeypatch.setattr(bench.training, "train_detector", no_training)
    again = Runner(data_dir, results, data_root, device="cpu", progress=False).run(suite)
    assert again.computed == [lost]
    rescored = json.loads(lost.read_text())
    assert rescored["metrics"] == expected["metrics"]  # same numbers from the same checkpoint and data


def test_keys_change_with_what_the_numbers_depend_on(suite, data_dir, data_root, tmp_path):
    runner = Runner(data_dir, tmp_path / "results", data_root, device="cpu", progress=False)
    keys = {c.key for c in runner.plan(suite)[0].cells}
    variants = [
        suite.with_overrides(epochs=2),
        suite.with_overrides(train_limit=301),
        suite.with_overrides(test_limit=199),
        suite.with_overrides(seeds=[1]),
        suite.with_overrides(bootstrap=51),
    ]
    for variant in variants:
        changed = {c.key for c in runner.plan(variant)[0].cells}
        assert not keys & changed
    assert keys == {c.key for c in runner.plan(suite)[0].cells}  # and only with that


def test_a_dry_run_lists_jobs_and_cells_from_the_suite_before_anything_is_imported(suite, data_root, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr(bench.estimate, "throughput", lambda *args: bench.estimate.Throughput(train=100, score=1000))
    threaded = suite.model_copy(update={"threads": 1})
    threads = torch.get_num_threads()
    try:
        runner = Runner(tmp_path / "empty", tmp_path / "results", data_root, device="cpu", progress=False)
        dry = runner.dry_run(threaded)
        assert torch.get_num_threads() == 1  # the suite's threads, as the run will use them
    finally:
        torch.set_num_threads(threads)
    assert dry.plan is None and {s.action for s in dry.sources} == {"import"}
    text = dry.text()
    assert "lenet on sd14, seed 0: 2 candidates, 4 cells; ~" in text  # two grid points; 2 sources x 2 perturbations
    assert "test sources: cifake-sd14-test, ddpm-cifar10" in text and "perturbations: clean, jpeg(quality=50)" in text
    assert dry.summary().startswith("1 jobs, 4 cells; 5 sources to prepare first")
    assert "1 jobs to run, estimated" in dry.summary() and dry.estimate.train > 0
    assert not [p for p in (tmp_path / "empty").rglob("*") if p.is_file()]  # nothing imported


def test_a_dry_run_knows_cached_checkpoints_and_recorded_cells(suite, data_dir, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(bench.estimate, "throughput", lambda *args: bench.estimate.Throughput(train=100, score=1000))
    runner = Runner(data_dir, tmp_path / "results", data_root, device="cpu", progress=False)
    runner.preparer.prepare(suite)
    cold = runner.dry_run(suite)
    assert cold.estimate.train > 0 and "2 candidates (0 cached), 4 cells (0 recorded)" in cold.text()
    runner.run(suite)
    lost = next((tmp_path / "results" / "records").glob("*.json"))
    lost.unlink()
    warm = runner.dry_run(suite)
    assert "2 candidates (2 cached), 4 cells (3 recorded)" in warm.text()
    assert warm.estimate.train == 0 and 0 < warm.estimate.score < cold.estimate.score  # one cell left to score
    assert "1 jobs (0 done), 4 cells (3 recorded)" in warm.summary()
    runner.run(suite)
    shutil.rmtree(data_dir / "checkpoints")  # every cell recorded: nothing to train, whatever the cache holds
    done = runner.dry_run(suite)
    assert done.estimate.train == 0 and done.estimate.score == 0 and "nothing to do" in done.text()


def test_same_suite_and_seed_give_identical_numbers_on_cpu(suite, cifake_dir, data_root, tmp_path):
    runs = []
    for name in ("a", "b"):
        data_dir = linked_sources(cifake_dir, tmp_path / f"cache-{name}")
        runs.append(Runner(data_dir, tmp_path / name, data_root, device="cpu", progress=False).run(suite))
    for first, second in zip(runs[0].records, runs[1].records, strict=True):
        assert first.key == second.key
        assert first.metrics == second.metrics
        assert first.training.threshold == second.training.threshold
        assert first.training.checkpoint_sha256 == second.training.checkpoint_sha256


KILL_SUITE = SUITE.replace("- {name: lenet, grid: {lr: [0.001, 0.003]}}", "- {name: lenet}\n  - {name: cifake-cnn}")


def _bench_run(suite_path, data_dir, results, data_root):
    import subprocess
    import sys

    command = [sys.executable, "-m", "bench", "run", "--suite", str(suite_path), "--data-dir", str(data_dir),
               "--data-root", str(data_root), "--results", str(results), "--threads", "1"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_mid_run_then_rerun_equals_an_uninterrupted_run(cifake_dir, data_root, tmp_path):
    import signal
    import time

    from bench.files import file_sha256

    suite_path = tmp_path / "kill.yaml"
    suite_path.write_text(textwrap.dedent(KILL_SUITE))
    cache = linked_sources(cifake_dir, tmp_path / "cache")

    victim = _bench_run(suite_path, cache, tmp_path / "killed", data_root)
    deadline = time.time() + 300
    while not list((tmp_path / "killed" / "records").glob("*.json")) and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    recorded = list((tmp_path / "killed" / "records").glob("*.json"))
    assert 0 < len(recorded) < 8
    written = {path: path.stat().st_mtime_ns for path in recorded}

    # the killed run resumed while an uninterrupted run (in this process) starts beside it, on the same cache
    resumed = _bench_run(suite_path, cache, tmp_path / "killed", data_root)
    Runner(cache, tmp_path / "beside", data_root, device="cpu", progress=False, threads=1).run(load_suite(suite_path))
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr

    for path, mtime in written.items():  # finished cells were kept, not recomputed
        assert path.stat().st_mtime_ns == mtime
    for sidecar in (cache / "checkpoints").glob("*.json"):
        info = json.loads(sidecar.read_text())
        assert file_sha256(sidecar.with_suffix(".safetensors")) == info["sha256"]
    boards = [pd.read_csv(tmp_path / name / "leaderboard.csv").drop(columns="train_seconds")  # timings differ
              for name in ("killed", "beside")]
    assert len(boards[0]) == 8
    pd.testing.assert_frame_equal(*boards)


def test_deduplication_drops_test_images_seen_in_training(suite, data_dir, data_root, tmp_path):
    """CIFAKE's SD test fakes hold 38 repeats and 349 distinct images that are also training fakes."""
    runner = Runner(data_dir, tmp_path / "results", data_root, device="cpu", progress=False)
    data = suite.model_dump()
    data["train"][0]["limit"] = data["test"]["limit"] = None
    whole = Suite.model_validate(data)
    data = runner.plan(whole)[1]
    test, train = data.test, data.train
    assert test["cifake-sd14-test"].count == 10000 - 387 and test["cifake-sd14-test"].removed == 387
    assert train["sd14"][1].count == 45000 - 751  # repeats among the SD training fakes
    assert data.in_training[("cifake-sd14-test", "sd14")] == 0
    kept = runner.plan(whole.model_copy(update={"deduplicate": False}))[1]
    assert kept.test["cifake-sd14-test"].count == 10000
    assert kept.in_training[("cifake-sd14-test", "sd14")] == 349
