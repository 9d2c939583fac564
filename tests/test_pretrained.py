"""Pretrained backbones: local safetensors files, timm:NAME weights (offline errors) and frozen backbones."""

from __future__ import annotations

import time

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from bench.detector import build_detector, load_pretrained
from bench.recipe import Recipe
from bench.training import train_detector

TIMM_DETECTORS = ["resnet50", "efficientnet-b0", "vit-tiny"]


def _save(model: torch.nn.Module, path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


def test_a_safetensors_file_saved_from_timm_loads_all_but_the_adapted_layers(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False)  # ImageNet shapes: 16x16 patches, 1000 classes
    _save(source, tmp_path / "vit.safetensors")
    detector = build_detector("vit-tiny")
    before = detector.model.blocks[0].attn.qkv.weight.clone()
    left_out = load_pretrained(detector.model, tmp_path / "vit.safetensors")
    assert left_out == ["head.bias", "head.weight", "patch_embed.proj.weight", "pos_embed"]
    assert torch.equal(detector.model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert not torch.equal(detector.model.blocks[0].attn.qkv.weight, before)
    assert torch.equal(detector.model.patch_embed.proj.bias, source.patch_embed.proj.bias)  # same shape: loaded
    assert detector.model.patch_embed.proj.weight.shape == (192, 3, 4, 4)


def test_timm_weights_are_copied_by_name_and_shape(monkeypatch):
    create = timm.create_model
    torch.manual_seed(2)
    hub = create("efficientnet_b0", pretrained=False)

    def fake_hub(name, pretrained=False, **kwargs):  # what timm would return after downloading
        return hub if pretrained else create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake_hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = build_detector("efficientnet-b0", pretrained="timm:efficientnet_b0.ra_in1k").model
    assert torch.equal(model.blocks[3][0].conv_pw.weight, hub.blocks[3][0].conv_pw.weight)
    assert model.classifier.weight.shape == (1, 1280)


def test_timm_weights_offline_fail_at_once_with_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        build_detector("resnet50", pretrained="timm:resnet18")
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message
    assert "timm.create_model('resnet18', pretrained=True)" in message
    assert "safetensors.torch.save_file(model.state_dict(), 'resnet18.safetensors')" in message
    assert "pretrained: /path/resnet18.safetensors" in message


def test_timm_download_errors_and_unknown_names_are_reported(monkeypatch):
    def unreachable(name, pretrained=False, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore detail")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(timm, "create_model", unreachable)
    with pytest.raises(FileNotFoundError, match=r"\(OSError: We couldn't connect.*\)\. On a machine with internet"):
        load_pretrained(torch.nn.Linear(2, 1), "timm:resnet18")
    with pytest.raises(ValueError, match="unknown timm model 'no-such-net'"):
        load_pretrained(torch.nn.Linear(2, 1), "timm:no-such-net")


@pytest.mark.parametrize(("name", "kwargs", "trainable"), [
    ("resnet50", {}, ("fc.",)),
    ("resnet50", {"stem": "cifar"}, ("fc.", "conv1.")),
    ("efficientnet-b0", {}, ("classifier.",)),
    ("vit-tiny", {}, ("head.", "patch_embed.", "pos_embed")),
])
def test_frozen_backbone_trains_only_the_head_and_adapted_layers(name, kwargs, trainable):
    model = build_detector(name, freeze_backbone=True, **kwargs).model
    learning = {n for n, p in model.named_parameters() if p.requires_grad}
    assert learning and all(n.startswith(trainable) for n in learning)
    assert {n for n, _ in model.named_parameters() if n.startswith(trainable)} == learning
    assert all(p.requires_grad for p in build_detector(name, **kwargs).model.parameters())  # fine-tuned by default


def test_training_leaves_a_frozen_backbone_unchanged():
    detector = build_detector("resnet50", freeze_backbone=True)
    before = {n: p.clone() for n, p in detector.model.named_parameters()}
    images = np.random.default_rng(0).integers(0, 256, (32, 3, 32, 32), dtype=np.uint8)
    train_detector(detector, images, np.r_[np.zeros(16, int), np.ones(16, int)], Recipe(epochs=1, batch_size=16),
                   seed=0, device=torch.device("cpu"), progress=False)
    changed = {n for n, p in detector.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"fc.weight", "fc.bias"}
