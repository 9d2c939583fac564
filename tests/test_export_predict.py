"""Train a tiny detector on real CIFAKE, export it, score it evaluate-only beside a trained one, and predict on its
test images as files: every per-image score is identical to the training run's score file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import linked_sources
from PIL import Image
from safetensors.torch import load_file, save_file

import bench.execute
import bench.model
import bench.plan
import bench.runner
from bench.audit import pixel_digests
from bench.cli import main
from bench.records import Record, load_records
from bench.runner import Runner
from bench.suite import load_suite
from bench.training import validation_split

SUITE = """
name: outside
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 1000}]
test: {real: cifake-real-test, fake: ["*"], limit: 200}
detectors: DETECTORS
recipe: {epochs: 1}
bootstrap: 20
"""


def cli(*args) -> SimpleNamespace:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return SimpleNamespace(code=result.exit_code, out=result.output, error=result.exception)


def suite_file(folder: Path, detectors: str) -> Path:
    path = folder / f"suite-{len(list(folder.glob('suite-*.yaml')))}.yaml"
    path.write_text(textwrap.dedent(SUITE).replace("DETECTORS", detectors))
    return path


def only(records: dict[Path, Record], detector: str) -> Record:
    [record] = [r for r in records.values() if r.detector == detector]
    return record


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifake_dir, data_root):
    """cifake-cnn trained for 1 epoch on 1,000 + 1,000 CIFAKE images and scored on 200 + 200, then exported."""
    root = tmp_path_factory.mktemp("outside")
    data_dir = linked_sources(cifake_dir, root / "cache")  # checkpoints made here stay here
    suite = suite_file(root, "[{name: cifake-cnn}]")
    Runner(data_dir, root / "trained", data_root, device="cpu", progress=False).run(load_suite(suite))
    record_path, record = next(iter(load_records(root / "trained").items()))
    exported = root / "export" / "cnn.safetensors"
    done = cli("export", "--record", record_path, "--data-dir", data_dir, "--out", exported)
    assert done.code == 0, done.out
    scores = np.load(root / "trained" / record.scores.file)
    return SimpleNamespace(root=root, data_dir=data_dir, data_root=data_root, suite=suite, record=record,
                           record_path=record_path, weights=exported, scores=scores)


@pytest.fixture(scope="module")
def outside(trained):
    """The exported weights scored evaluate-only (threshold calibrated on sd14) beside LeNet trained here; the images
    the calibration scored and the run's prepared data are kept."""
    suite = suite_file(trained.root, f"[{{name: cifake-cnn, weights: {trained.weights}, calibrate: [sd14]}}, "
                                     "{name: lenet}]")
    seen: dict = {"calibration": [], "inside": False}
    evaluate_only, logits = bench.execute._evaluate_only, bench.model.Detector.logits
    planner = bench.runner.plan

    def calibrating(*args, **kwargs):
        seen["inside"] = True
        try:
            return evaluate_only(*args, **kwargs)
        finally:
            seen["inside"] = False

    def spy(detector, images, *args, **kwargs):
        if seen["inside"]:
            seen["calibration"].append(np.array(images))
        return logits(detector, images, *args, **kwargs)

    def planning(suite, data):
        seen["data"] = data
        return planner(suite, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench.execute, "_evaluate_only", calibrating)
        patch.setattr(bench.model.Detector, "logits", spy)
        patch.setattr(bench.runner, "plan", planning)
        run = Runner(trained.data_dir, trained.root / "outside", trained.data_root, device="cpu",
                     progress=False).run(load_suite(suite))
    records = load_records(trained.root / "outside")
    return SimpleNamespace(run=run, records=records, cnn=only(records, "cifake-cnn"), data=seen["data"],
                           calibration=seen["calibration"], folder=trained.root / "outside")


def test_export_writes_the_checkpoint_with_a_model_card_and_a_reproducing_suite(trained):
    record, weights = trained.record, trained.weights
    card = json.loads(weights.with_suffix(".json").read_text())
    checkpoint = trained.data_dir / "checkpoints" / f"{record.training.checkpoint}.safetensors"
    stored, exported = load_file(checkpoint), load_file(weights)
    assert stored.keys() == exported.keys() and all(torch.equal(stored[k], exported[k]) for k in stored)
    assert (card["detector"], card["kwargs"], card["seed"]) == ("cifake-cnn", {}, 0)
    assert card["recipe"] == record.training.recipe and card["recipe"]["epochs"] == 1
    assert card["training_set"] == record.train.model_dump(mode="json", by_alias=True)
    assert card["training_set"]["fake"]["sha256"] == record.train.fake.sha256
    assert card["threshold"]["logit"] == record.threshold == record.training.threshold
    assert card["validation"] == record.training.val and card["n_val"] == 200
    assert card["weights"]["checkpoint_sha256"] == record.training.checkpoint_sha256
    markdown = weights.with_suffix(".md").read_text()
    assert "# cifake-cnn trained on sd14, seed 0" in markdown and card["reproduce"]["command"] in markdown
    reproduce = load_suite(weights.with_suffix(".suite.yaml"))
    assert [d.name for d in reproduce.detectors] == ["cifake-cnn"] and reproduce.seeds == [0]
    again = trained.root / "export" / "by-suite.safetensors"  # chosen by suite, detector, training set and seed
    done = cli("export", "--suite", weights.with_suffix(".suite.yaml"), "--detector", "cifake-cnn", "--train-set",
               "sd14", "--seed", 0, "--data-dir", trained.data_dir, "--data-root", trained.data_root, "--out", again)
    assert done.code == 0, done.out
    assert again.read_bytes() == weights.read_bytes()  # the same checkpoint, the same file
    missing = cli("export", "--suite", trained.suite, "--detector", "cifake-cnn", "--train-set", "sd14", "--seed", 1,
                  "--data-dir", trained.data_dir, "--data-root", trained.data_root)
    assert missing.code == 1 and "trains no 'cifake-cnn' on 'sd14' with seed 1" in missing.out


def test_evaluate_only_scores_are_identical_to_the_training_run(trained, outside):
    cnn, record = outside.cnn, trained.record
    scores = np.load(outside.folder / cnn.scores.file)
    assert np.array_equal(scores, trained.scores)
    assert cnn.threshold == record.threshold  # the same validation split and rule as training
    assert cnn.metrics == record.metrics and cnn.confusion_matrix == record.confusion_matrix
    assert cnn.weights.sha256 == json.loads(trained.weights.with_suffix(".json").read_text())["weights"]["sha256"]
    assert cnn.weights.note.startswith("weights from cnn.safetensors (sha256 ")
    assert cnn.weights.note.endswith("), not trained here")
    assert "validation split" in cnn.training.threshold_rule and cnn.training.n_val == 200
    assert cnn.test_images_in_training is None and cnn.key != record.key
    assert len(outside.run.computed) == 2


def test_calibration_scores_the_training_validation_split_and_never_test_images(trained, outside):
    [images] = outside.calibration
    real, fake = outside.data.train["sd14"]
    labels = np.r_[np.zeros(real.count, int), np.ones(fake.count, int)]
    recipe = bench.plan.grid(load_suite(trained.suite), load_suite(trained.suite).detectors[0])[0]
    val = np.sort(validation_split(labels, recipe, 0)[1])
    assert np.array_equal(images, np.concatenate([real.images, fake.images])[val])
    test = {d for subset in outside.data.test.values() for d in pixel_digests(subset.images)}
    assert not set(pixel_digests(images)) & test


def test_an_evaluate_only_detector_sits_in_the_leaderboard_beside_trained_ones(outside):
    markdown = (outside.folder / "leaderboard.md").read_text()
    table = markdown.split("### Trained on sd14")[-1]
    assert "| cifake-cnn † |" in table and "| lenet " in table
    assert "- † cifake-cnn: evaluate-only, weights from cnn.safetensors (sha256 " in markdown
    cells = pd.read_csv(outside.folder / "leaderboard.csv")
    assert cells.set_index("detector")["weights"].fillna("").str.contains("not trained here").to_dict() == {
        "cifake-cnn": True, "lenet": False}
    pairs = pd.read_csv(outside.folder / "leaderboard-comparisons.csv")
    assert {frozenset((a.split()[0], b.split()[0])) for a, b in zip(pairs["a"], pairs["b"], strict=True)} == {
        frozenset(("cifake-cnn", "lenet"))}


def test_predict_on_image_files_gives_the_run_scores(trained, outside, tmp_path):
    folders = []
    for name in ("cifake-real-test", "cifake-sd14-test"):  # the run's test images, as PNG files
        folder = tmp_path / name
        folder.mkdir()
        for i, image in enumerate(outside.data.test[name].images):
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:04d}.png")
        folders.append(folder)
    out = tmp_path / "scores.json"
    done = cli("predict", *folders, "--weights", trained.weights, "--json", out, "--csv", tmp_path / "scores.csv")
    assert done.code == 0, done.out
    result = json.loads(out.read_text())
    logits = np.array([row["logit"] for row in result["images"]], np.float32)
    assert np.array_equal(logits, trained.scores)
    assert result["threshold"]["logit"] == trained.record.threshold and result["detector"] == "cifake-cnn"
    rows = pd.read_csv(tmp_path / "scores.csv")
    assert (rows["verdict"] == np.where(logits >= trained.record.threshold, "fake", "real")).all()
    assert result["counts"]["fake"] == int((logits >= trained.record.threshold).sum())
    assert "400 images scored by cifake-cnn" in done.out and "centre-cropped to its largest square" in done.out
    for record in (trained.record_path, next(p for p, r in outside.records.items() if r.detector == "cifake-cnn")):
        again = tmp_path / "again.json"
        done = cli("predict", folders[1], "--record", record, "--data-dir", trained.data_dir, "--json", again)
        assert done.code == 0, done.out
        logits = np.array([row["logit"] for row in json.loads(again.read_text())["images"]], np.float32)
        assert np.array_equal(logits, trained.scores[200:])


def test_predict_lists_and_skips_unusable_files(trained, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "nested").mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels[:32, :32]).save(folder / "a-small.png")
    Image.fromarray(pixels).save(folder / "b-wide.jpg", quality=90)
    Image.fromarray(pixels[:40, :40]).save(folder / "nested" / "c.png")
    Image.fromarray(pixels[:32, :32, 0]).save(folder / "d-grey.png")
    (folder / "e-empty.png").write_bytes(b"")
    (folder / "f-garbage.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "p.json"
    done = cli("predict", folder, tmp_path / "missing.png", "--weights", trained.weights, "--json", out,
               "--batch-size", 1, "--threshold", 0.5)
    assert done.code == 0, done.out
    assert "Traceback" not in done.out and done.error is None
    result = json.loads(out.read_text())
    assert result["counts"] | {"skipped_by_reason": None} == {"scored": 3, "fake": result["counts"]["fake"],
                                                              "real": 3 - result["counts"]["fake"], "skipped": 4,
                                                              "skipped_by_reason": None, "ignored_not_image_names": 1}
    assert [(Path(r["file"]).name, r["width"], r["height"]) for r in result["images"]] == [
        ("a-small.png", 32, 32), ("b-wide.jpg", 96, 64), ("c.png", 40, 40)]
    skipped = {Path(s["file"]).name: s["reason"] for s in result["skipped"]}
    assert skipped["missing.png"] == "not found" and skipped["e-empty.png"] == "the file is empty"
    assert "colour mode L" in skipped["d-grey.png"] and "not a readable image" in skipped["f-garbage.jpg"]
    assert "Skipped 4 files that could not be used:" in done.out and "Ignored 1 file" in done.out
    assert "predict: 6/6 images" in done.out  # plain progress lines when not on a terminal
    assert result["threshold"]["rule"] == "given: probability 0.5"


def test_predict_errors_are_one_line(trained, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    wrong = cli("predict", image, "--weights", trained.weights, "--kwarg", "filters=16")
    assert wrong.code == 1 and len(wrong.out.strip().splitlines()) == 1
    assert "does not fit detector 'cifake-cnn'" in wrong.out and "shapes differ: 0.weight" in wrong.out
    renamed = tmp_path / "renamed.pt"
    torch.save({f"backbone.{k}": v for k, v in load_file(trained.weights).items()}, renamed)
    keys = cli("predict", image, "--weights", renamed, "--detector", "cifake-cnn")
    assert keys.code == 1 and len(keys.out.strip().splitlines()) == 1
    assert "8 missing keys" in keys.out and "set strip_prefix: 'backbone.'" in keys.out
    assert cli("predict", image, "--weights", renamed, "--detector", "cifake-cnn",
               "--strip-prefix", "backbone.").code == 0
    unnamed = cli("predict", image, "--weights", renamed)
    assert unnamed.code == 1 and "name it with --detector" in unnamed.out
    marker = tmp_path / "ran"
    torch.save({"weights": load_file(trained.weights), "hook": _Payload(marker)}, tmp_path / "evil.pth")
    evil = cli("predict", image, "--weights", tmp_path / "evil.pth", "--detector", "cifake-cnn")
    assert evil.code == 1 and "full unpickling" in evil.out and not marker.exists()
    plain = tmp_path / "plain.safetensors"
    save_file(load_file(trained.weights), plain)  # no metadata: the default threshold, probability 0.5
    done = cli("predict", image, "--weights", plain, "--detector", "cifake-cnn", "--json", tmp_path / "p.json")
    assert done.code == 0 and json.loads((tmp_path / "p.json").read_text())["threshold"]["logit"] == 0.0


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")
