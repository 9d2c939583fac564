"""The runner end to end on real CIFAKE subsets: records, leaderboard, resume, and what keys cover."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

import bench.runner
from bench.runner import Runner
from bench.suite import load_suite

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
    copy = tmp_path / "cache"
    shutil.copytree(cifake_dir, copy)
    return copy


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
    by_test = {(r["test"]["name"], r["perturbation"]["label"]): r for r in first.records}
    assert by_test[("ddpm-cifar10", "clean")]["n_fake"] == 129
    assert by_test[("cifake-sd14-test", "clean")]["n_fake"] == 200
    # the reals are shared by both test pairs, scored once
    assert by_test[("ddpm-cifar10", "clean")]["metrics"]["accuracy_real"] == (
        by_test[("cifake-sd14-test", "clean")]["metrics"]["accuracy_real"]
    )
    markdown = first.leaderboard["markdown"].read_text()
    assert "tested on ddpm-cifar10 (200 real vs 129 fake)" in markdown
    assert "| lenet" in markdown and "jpeg(quality=50)" in markdown
    assert len(first.leaderboard["csv"].read_text().splitlines()) == 5

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed run must not train")

    monkeypatch.setattr(bench.runner, "train_detector", no_training)
    monkeypatch.setattr(bench.runner.Runner, "_trained", no_training)
    again = Runner(data_dir, results, data_root, device="cpu", progress=False).run(suite)
    assert not again.computed and len(again.skipped) == 4
    assert again.leaderboard["markdown"].read_text() == markdown


def test_a_lost_record_is_rescored_from_the_cached_checkpoint(suite, data_dir, data_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    first = Runner(data_dir, results, data_root, device="cpu", progress=False).run(suite)
    lost = first.computed[0]
    expected = json.loads(lost.read_text())
    lost.unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("the checkpoint is cached: nothing to train")

    monkeypatch.setattr(bench.runner, "train_detector", no_training)
    again = Runner(data_dir, results, data_root, device="cpu", progress=False).run(suite)
    assert again.computed == [lost]
    rescored = json.loads(lost.read_text())
    assert rescored["metrics"] == expected["metrics"]  # same numbers from the same checkpoint and data


def test_keys_change_with_what_the_numbers_depend_on(suite, data_dir, data_root, tmp_path):
    runner = Runner(data_dir, tmp_path / "results", data_root, device="cpu", progress=False)
    keys = {c.key for j in runner.plan(suite)[0] for c in j.cells}
    variants = [
        suite.with_overrides(epochs=2),
        suite.with_overrides(train_limit=301),
        suite.with_overrides(test_limit=199),
        suite.with_overrides(seeds=[1]),
        suite.with_overrides(bootstrap=51),
    ]
    for variant in variants:
        changed = {c.key for j in runner.plan(variant)[0] for c in j.cells}
        assert not keys & changed
    assert keys == {c.key for j in runner.plan(suite)[0] for c in j.cells}  # and only with that
