"""The CUDA path (bf16 autocast, channels_last, GPU-resident data, generators, attacks, attributions, worker
processes sharing one GPU) on real CIFAKE images. Skipped where no GPU is present; run them on one with
``pytest tests/test_cuda.py``."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from bench.attribution import AttributionSettings, explain
from bench.detector import DETECTORS, build_detector
from bench.executors import ProcessExecutor
from bench.generator import generate_source
from bench.metrics import point_metrics
from bench.perturbations import PERTURBATIONS
from bench.recipe import Recipe
from bench.runner import Runner
from bench.sources import SourceStore
from bench.suite import load_suite
from bench.training import predict_logits, seed_everything, train_detector

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def split(cifake: SourceStore):
    """2,000 + 2,000 CIFAKE training images and 1,000 + 1,000 test images."""
    real, fake = cifake.load("cifake-real-train").images, cifake.load("cifake-sd14-train").images
    test_real, test_fake = cifake.load("cifake-real-test").images, cifake.load("cifake-sd14-test").images
    train = np.concatenate([real[:2000], fake[:2000]]), np.r_[np.zeros(2000, int), np.ones(2000, int)]
    test = np.concatenate([test_real[:1000], test_fake[:1000]]), np.r_[np.zeros(1000, int), np.ones(1000, int)]
    return train, test


@pytest.fixture(scope="module")
def trained_on_cuda(split):
    (images, labels), _ = split
    seed_everything(0)
    detector = build_detector("cifake-cnn")
    result = train_detector(detector, images, labels, Recipe(epochs=3), seed=0, device=CUDA, progress=False)
    return detector, result


def test_training_on_cuda_learns_and_scores_like_the_cpu(trained_on_cuda, split):
    detector, result = trained_on_cuda
    (test, test_labels) = split[1]
    assert result.val["balanced_accuracy"] > 0.75
    on_gpu = predict_logits(detector, test, CUDA)  # bf16 autocast
    on_cpu = predict_logits(detector, test, torch.device("cpu"))  # float32
    assert np.abs(on_gpu - on_cpu).max() < 0.1 * max(1.0, np.abs(on_cpu).max())
    gpu = point_metrics(test_labels, on_gpu, result.threshold)
    cpu = point_metrics(test_labels, on_cpu, result.threshold)
    assert abs(gpu["roc_auc"] - cpu["roc_auc"]) < 0.005 and abs(gpu["accuracy"] - cpu["accuracy"]) < 0.01
    assert gpu["accuracy"] > 0.75


@pytest.mark.parametrize("name", [n for n in DETECTORS.names() if DETECTORS.get(n).differentiable])
def test_every_detector_takes_a_training_step_under_bf16_and_channels_last(name, split):
    (images, labels), _ = split
    seed_everything(0)
    recipe = DETECTORS.get(name).recipe.updated(epochs=1, batch_size=64)
    detector = build_detector(name)
    result = train_detector(detector, images[::20], labels[::20], recipe, seed=0, device=CUDA, progress=False)
    assert np.isfinite(result.history[0]["train_loss"]) and np.isfinite(result.threshold)
    assert all(v.device.type == "cpu" for v in result.state.values())  # checkpoints are saved from CPU copies


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_attacks_on_cuda_match_the_cpu(name, trained_on_cuda, split):
    detector, _ = trained_on_cuda
    (test, test_labels) = split[1]
    images = torch.tensor(test[:256]).float() / 255
    labels = torch.tensor(test_labels[:256])
    params = {"eps": 4 / 255} | ({"steps": 5} if name == "pgd" else {})
    attack = PERTURBATIONS.get(name)
    detector.eval()
    on_gpu = attack(images.to(CUDA), labels.to(CUDA), detector.to(CUDA), torch.Generator(CUDA).manual_seed(0),
                    **params)
    assert on_gpu.device.type == "cuda" and (on_gpu.cpu() - images).abs().max() <= 4 / 255 + 1e-6
    if name == "fgsm":  # no random start: the same perturbation up to a few sign flips of tiny gradients
        on_cpu = attack(images, labels, detector.cpu(), torch.Generator().manual_seed(0), **params)
        assert (on_gpu.cpu() - on_cpu).abs().gt(1e-4).float().mean() < 0.01
    detector.to(CUDA)


def test_attributions_run_on_cuda(trained_on_cuda, split):
    detector, result = trained_on_cuda
    test = split[1][0]
    settings = AttributionSettings(methods=["saliency", "integrated_gradients", "grad_cam"], images=8, steps=4,
                                   ig_steps=4)
    seed_everything(1)
    randomised = build_detector("cifake-cnn").to(CUDA)
    scores, figure = explain(detector.to(CUDA), randomised, test[:8], test[1000:1008], result.threshold, settings,
                             CUDA, resamples=50)
    assert set(scores["methods"]) == set(settings.methods)
    assert all(np.isfinite(m["faithfulness"]["value"]) for m in scores["methods"].values())
    assert figure.startswith(b"\x89PNG")


def test_generators_train_and_sample_on_cuda(tmp_path, cifake: SourceStore):
    real = cifake.load("cifake-real-train")
    SourceStore(tmp_path).save("real", np.asarray(real.images[:512]), "real", "train", {"importer": "test"},
                               real.manifest.encoding, list(real.files[:512]))
    dcgan = {"width": 16, "epochs": 1, "batch_size": 64}
    ddpm = {"block_out_channels": [16, 32], "layers_per_block": 1, "epochs": 1, "batch_size": 64,
            "train_timesteps": 100, "steps": 4}
    for name, settings in (("dcgan", dcgan), ("ddpm", ddpm)):
        generate_source(tmp_path, name, settings, "real", 32, 0, f"{name}-cuda", progress=False, device="cuda")
        images = SourceStore(tmp_path).load(f"{name}-cuda").images
        assert images.shape == (32, 3, 32, 32) and images.dtype == np.uint8 and len(np.unique(images)) > 1


SUITE = """
name: cuda-workers
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 500}]
test: {real: cifake-real-test, fake: ["*"], limit: 300}
detectors: [{name: lenet}, {name: cifake-cnn}, {name: random-forest, kwargs: {n_estimators: 10}}]
recipe: {epochs: 1}
perturbations: [clean, {name: fgsm, eps: 2/255}]
bootstrap: 50
"""


def test_worker_processes_share_one_gpu(tmp_path, cifake_dir, data_root):
    import shutil

    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE))
    cache = tmp_path / "cache"
    shutil.copytree(cifake_dir, cache)
    summary = Runner(cache, tmp_path / "results", data_root, device="cuda", progress=False,
                     executor=ProcessExecutor(2)).run(load_suite(path))
    records = [json.loads(p.read_text()) for p in summary.computed]
    assert len(records) == 6
    assert {r["provenance"]["hardware"]["device"] for r in records} == {"cuda"}
    forest_fgsm = [r for r in records if r["detector"] == "random-forest" and r["perturbation"]["name"] == "fgsm"]
    assert len(forest_fgsm) == 1 and forest_fgsm[0]["not_applicable"]
    cnn = [r for r in records if r["detector"] == "cifake-cnn" and r["perturbation"]["name"] == "clean"]
    assert cnn[0]["metrics"]["roc_auc"]["value"] > 0.6
