"""Weights made elsewhere: safe formats, refused pickles (never executed), strict one-line key and shape errors,
evaluate-only suite entries and the keys that cover their weights and threshold rule."""

from __future__ import annotations

import builtins
import re
import textwrap
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bench.detector import build_detector
from bench.plan import PlanError, plan
from bench.prepare import Prepared, Subset
from bench.suite import FixedThreshold, SuiteError, load_suite
from bench.weights import WeightsError, load_weights, read_weights


class Payload:
    """An object whose unpickling creates a file: what a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_detector("cifake-cnn").model


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def fresh():
    torch.manual_seed(1)
    return build_detector("cifake-cnn").model


@pytest.mark.parametrize("form", ["safetensors", "pth", "pt-ordered", "pth-nested", "pt-legacy"])
def test_safe_formats_load_every_tensor_exactly(model, tmp_path, form):
    weights = state(model)
    path = tmp_path / {"safetensors": "w.safetensors", "pt-ordered": "w.pt", "pt-legacy": "w.pt"}.get(form, "w.pth")
    if form == "safetensors":
        save_file(weights, path)
    elif form == "pth":
        torch.save(weights, path)
    elif form == "pt-ordered":
        torch.save(OrderedDict(weights), path)
    elif form == "pth-nested":  # as many releases save them: {"model": state_dict, "epoch": ...}
        torch.save({"model": weights, "epoch": 7, "optimizer_name": "adam"}, path)
    else:
        torch.save(weights, path, _use_new_zipfile_serialization=False)
    target = fresh()
    assert not torch.equal(target[0].weight, model[0].weight)
    read = load_weights(target, path, name="cifake-cnn")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in weights.items())
    assert read.inside == ("model" if form == "pth-nested" else "")
    assert len(read.sha256) == 64 and "not trained here" in read.describe()["note"]


def test_a_pickled_object_is_refused_without_running_it(model, tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "release.pth"
    torch.save({"state_dict": state(model), "config": Payload(marker)}, path)
    with pytest.raises(WeightsError) as error:
        read_weights(path)
    message = str(error.value)
    assert not marker.exists()  # refused unread: the payload never ran
    assert "\n" not in message and "full unpickling" in message and "GLOBAL io.open" in message
    assert "weights_only=False" in message and "st.save_file" in message and "release.safetensors" in message
    torch.load(path, weights_only=False)  # what bench refuses to do: this runs the payload
    assert marker.exists()


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "is empty"),
    (b"<!DOCTYPE html><html><body>Not Found</body></html>", "is text ('<!DOCTYPE html>"),
    (b'{"error": "rate limited"}', "is text"),
    (b"\x80\x02}q\x00(X\x01", "not a readable PyTorch file"),
])
def test_unreadable_files_get_one_line_errors(tmp_path, content, expected):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=re.escape(expected)) as error:
        read_weights(path)
    assert "\n" not in str(error.value)


def test_truncated_and_foreign_files(model, tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(state(model), whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(WeightsError, match="not a readable PyTorch file"):
        read_weights(cut)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        read_weights(bad)
    with zipfile.ZipFile(tmp_path / "w.ckpt", "w") as archive:
        archive.writestr("x", "y")
    with pytest.raises(WeightsError, match=r"unknown weights format '\.ckpt'"):
        read_weights(tmp_path / "w.ckpt")
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        read_weights(listed)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_weights(tmp_path / "missing.pt")


def test_wrong_keys_and_shapes_are_named_in_one_line(model, tmp_path):
    weights = state(model)
    weights["7.weight"] = torch.zeros(64, 100)
    del weights["9.bias"]
    weights["head.extra"] = torch.zeros(3)
    path = tmp_path / "w.pt"
    torch.save(weights, path)
    with pytest.raises(WeightsError) as error:
        load_weights(fresh(), path, name="cifake-cnn")
    message = str(error.value)
    assert "\n" not in message and "does not fit detector 'cifake-cnn'" in message
    assert "1 missing key (9.bias)" in message and "1 unexpected key (head.extra)" in message
    assert "1 shape differs: 7.weight (file (64, 100), model (64, 1152))" in message


def test_prefixes_are_diagnosed_and_remapped(model, tmp_path):
    wrapped = tmp_path / "dataparallel.pt"
    torch.save({f"module.{k}": v for k, v in state(model).items()}, wrapped)
    with pytest.raises(WeightsError, match="set strip_prefix: 'module.'"):
        load_weights(fresh(), wrapped)
    target = fresh()
    load_weights(target, wrapped, strip_prefix="module.")
    assert torch.equal(target[7].weight, model[7].weight)
    bare = tmp_path / "bare.safetensors"  # a backbone's tensors saved without the wrapper's prefix
    save_file({k.removeprefix("model."): v.contiguous() for k, v in build_detector("cifake-cnn").state_dict().items()},
              bare)
    detector = build_detector("cifake-cnn")
    with pytest.raises(WeightsError, match="set add_prefix: 'model.'"):
        load_weights(detector, bare)
    load_weights(detector, bare, add_prefix="model.")


SUITE = """
name: outside
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
  folder-train: {importer: folder, path: x, split: train, label: fake}
train:
  - {name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 100}
  - {name: other, real: [cifake-real-train], fake: [folder-train], limit: 100}
test: {real: cifake-real-test, fake: ["*"], limit: 50}
seeds: [0, 1, 2]
detectors:
  - {name: lenet}
  - {name: cifake-cnn, weights: WEIGHTS, ENTRY}
"""


def write_suite(tmp_path: Path, weights: Path, entry: str = "threshold: {probability: 0.5}") -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE).replace("WEIGHTS", str(weights)).replace(", ENTRY", f", {entry}"
                                                                                    if entry else ""))
    return path


@pytest.mark.parametrize(("entry", "expected"), [
    ("grid: {lr: [0.1, 0.2]}", "grid: the detector's weights come from"),
    ("pretrained: x.safetensors", "pretrained: the detector's weights come from"),
    ("threshold: {probability: 1.5}", "less than 1"),
    ("threshold: {probability: 0.5, logit: 0}", "either probability (e.g. 0.5) or logit"),
    ("threshold: {logit: 0}, calibrate: [sd14]", "not both"),
    ("calibrate: [cifake-sd14-test]", "not a training set of this suite"),
])
def test_evaluate_only_entries_are_validated(tmp_path, entry, expected):
    with pytest.raises(SuiteError, match=re.escape(expected)):
        load_suite(write_suite(tmp_path, tmp_path / "w.safetensors", entry))


def test_options_of_weights_need_weights_and_a_known_format(tmp_path):
    text = write_suite(tmp_path, tmp_path / "w.safetensors").read_text()
    (tmp_path / "a.yaml").write_text(text.replace("- {name: lenet}", "- {name: lenet, calibrate: [sd14]}"))
    with pytest.raises(SuiteError, match="calibrate: only for a detector trained elsewhere; add weights: FILE"):
        load_suite(tmp_path / "a.yaml")
    with pytest.raises(SuiteError, match=re.escape("give a .safetensors, .pt, .pth file")):
        load_suite(write_suite(tmp_path, tmp_path / "w.onnx"))
    (tmp_path / "b.yaml").write_text(text.replace("name: cifake-cnn", "name: random-forest"))
    with pytest.raises(SuiteError, match="is an estimator"):
        load_suite(tmp_path / "b.yaml")


def test_fixed_thresholds_are_logits():
    assert FixedThreshold(probability=0.5).value == 0.0
    assert FixedThreshold(probability=0.8).value == pytest.approx(np.log(4))
    assert FixedThreshold(logit=-1.5).value == -1.5
    assert FixedThreshold(logit=0).describe() == "fixed: logit 0 (probability 0.5)"


def synthetic_data() -> Prepared:
    """Prepared subsets of random pixels: planning reads their hashes and sizes only."""
    rng = np.random.default_rng(0)

    def subset(n: int) -> Subset:
        return Subset.of(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), [])

    train = {"sd14": (subset(20), subset(20)), "other": (subset(20), subset(20))}
    return Prepared(train, {"cifake-real-test": subset(10), "cifake-sd14-test": subset(10)})


def test_plan_scores_weights_once_per_training_set_and_keys_cover_them(model, tmp_path):
    weights = tmp_path / "w.safetensors"
    save_file(state(model), weights)
    data = synthetic_data()
    fixed = load_suite(write_suite(tmp_path, weights))
    jobs = plan(fixed, data).jobs
    outside = [j for j in jobs if j.entry.evaluate_only]
    assert [(j.train_name, j.seed, j.candidates) for j in outside] == [("sd14", 0, ()), ("other", 0, ())]
    assert len([j for j in jobs if not j.entry.evaluate_only]) == 6  # lenet: 2 training sets x 3 seeds
    assert outside[0].label == "cifake-cnn (weights w.safetensors) beside sd14"
    calibrated = load_suite(write_suite(tmp_path, weights, "calibrate: [other]"))
    assert [j.train_name for j in plan(calibrated, data).jobs if j.entry.evaluate_only] == ["other"]

    def keys(suite) -> dict[tuple[str, str], str]:
        return {(j.entry.name, j.train_name, j.seed): j.key for j in plan(suite, data).jobs}

    before = keys(fixed)
    alone = keys(fixed.with_overrides(detectors="lenet"))
    assert {k: v for k, v in before.items() if k[0] == "lenet"} == alone  # trained entries: keys unchanged
    variants = [write_suite(tmp_path, weights, "threshold: {probability: 0.6}"),
                write_suite(tmp_path, weights, "calibrate: [sd14, other]"),
                write_suite(tmp_path, weights, "threshold: {probability: 0.5}, strip_prefix: 'module.'")]
    for variant in variants:
        changed = keys(load_suite(variant))
        assert changed[("cifake-cnn", "sd14", 0)] != before[("cifake-cnn", "sd14", 0)]
    assert keys(load_suite(write_suite(tmp_path, weights, "threshold: {logit: 0.0}"))) == before  # the same rule
    save_file({k: v + 1 for k, v in state(model).items()}, weights)  # other weights, same file name
    assert keys(fixed)[("cifake-cnn", "sd14", 0)] != before[("cifake-cnn", "sd14", 0)]
    weights.unlink()
    with pytest.raises(PlanError, match="weights file .* not found"):
        plan(fixed, data)


def test_weights_released_per_seed_are_scored_as_their_seed(model, tmp_path):
    for seed in (0, 1, 2):
        save_file({k: v + seed for k, v in state(model).items()}, tmp_path / f"w-seed{seed}.safetensors")
    data = synthetic_data()
    quoted = f'"{tmp_path / "w-seed{seed}.safetensors"}"'  # YAML: braces in a flow mapping need quotes
    suite = load_suite(write_suite(tmp_path, quoted, "calibrate: [sd14]"))
    outside = [j for j in plan(suite, data).jobs if j.entry.evaluate_only]
    assert [(j.train_name, j.seed) for j in outside] == [("sd14", 0), ("sd14", 1), ("sd14", 2)]
    assert [j.label for j in outside] == [f"cifake-cnn (weights w-seed{s}.safetensors) beside sd14" for s in (0, 1, 2)]
    assert len({j.weights_sha256 for j in outside}) == 3 and len({j.key for j in outside}) == 3
    (tmp_path / "w-seed2.safetensors").unlink()
    with pytest.raises(PlanError, match="w-seed2.safetensors not found"):
        plan(suite, data)
