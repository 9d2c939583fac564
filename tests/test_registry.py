"""The plugin registries: lookup, wildcard listing, close-match errors and entry-point discovery."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from conftest import BUILTIN_DETECTORS

from bench.detector import DETECTORS, build_detector
from bench.generator import GENERATORS
from bench.perturbations import PERTURBATIONS
from bench.registry import Registry, UnknownPluginError


def test_builtin_detectors_are_registered_and_map_images_to_one_logit():
    assert DETECTORS.names() == BUILTIN_DETECTORS
    images = torch.rand(2, 3, 32, 32)
    for name in BUILTIN_DETECTORS:
        if not DETECTORS.get(name).differentiable:  # an estimator: scored after fitting (tests/test_estimator.py)
            continue
        logits = build_detector(name).eval()(images)
        assert logits.shape == (2,), name


def test_wildcard_listing():
    assert DETECTORS.names("*net*") == ["alexnet", "efficientnet-b0", "freqnet", "lenet", "resnet50"]
    assert DETECTORS.names("vit-?iny") == ["vit-tiny"]
    assert "clean" in PERTURBATIONS.names() and "jpeg" in PERTURBATIONS.names()
    assert GENERATORS.names("zz*") == []


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownPluginError) as error:
        DETECTORS.get("resnet-50")
    message = str(error.value)
    assert "unknown detector 'resnet-50'" in message
    assert "Did you mean 'resnet50'" in message
    assert "bench list detectors" in message


def test_registering_a_different_object_twice_is_refused():
    registry: Registry[object] = Registry("thing", "bench.test-things", "bench.detectors")
    registry.register("a", object())
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", object())


def _plugin_package(root: Path, body: str, entry_points: str) -> None:
    """A package installed the way pip would: a module and a .dist-info with entry points."""
    (root / "my_detectors.py").write_text(textwrap.dedent(body))
    info = root / "my_detectors-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-detectors\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_third_party_detector_runs_in_a_suite_without_touching_the_harness(tmp_path, cifake_dir, data_root):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    _plugin_package(
        plugin,
        '''
        from torch import nn

        def tiny_cnn():
            """A detector from someone else's package."""
            return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(8, 1))

        def broken():
            raise RuntimeError("never called")
        ''',
        """
        [bench.detectors]
        tiny-cnn = my_detectors:tiny_cnn
        missing = not_installed_module:thing
        """,
    )
    suite = tmp_path / "plugin-suite.yaml"
    suite.write_text(textwrap.dedent("""
        name: plugin-suite
        sources:
          cifake-real-train: {importer: cifake, split: train, label: real}
          cifake-sd14-train: {importer: cifake, split: train, label: fake}
          cifake-real-test: {importer: cifake, split: test, label: real}
          cifake-sd14-test: {importer: cifake, split: test, label: fake}
        train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 200}]
        test: {real: cifake-real-test, fake: [cifake-sd14-test], limit: 100}
        detectors: [{name: tiny-cnn}]
        recipe: {epochs: 1}
        bootstrap: 20
    """))
    env = {**os.environ, "PYTHONPATH": str(plugin)}
    bench = [sys.executable, "-m", "bench"]
    listed = subprocess.run([*bench, "list", "detectors"], env=env, capture_output=True, text=True, check=True)
    assert "tiny-cnn" in listed.stdout.split()
    assert "missing" in listed.stderr and "failed to load" in listed.stderr  # reported, registry still works
    run = subprocess.run(
        [*bench, "run", "--suite", str(suite), "--data-dir", str(cifake_dir), "--results", str(tmp_path / "out")],
        env=env, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    leaderboard = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| tiny-cnn" in leaderboard


def test_pretrained_weights_load_from_a_local_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    source = build_detector("resnet50", stem="imagenet").model
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "imagenet.safetensors")
    adapted = build_detector("resnet50", pretrained=tmp_path / "imagenet.safetensors", stem="cifar").model
    # every weight but the replaced 3x3 stem is taken from the file
    assert torch.equal(adapted.layer4[2].conv3.weight, source.layer4[2].conv3.weight)
    assert adapted.conv1.weight.shape == (64, 3, 3, 3)
    save_file({"x": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="different architecture"):
        build_detector("lenet", pretrained=tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        build_detector("lenet", pretrained=tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", [n for n in DETECTORS.names() if DETECTORS.get(n).attributes_sources])
def test_builtin_detectors_build_source_attribution_models(name):
    classes = ("real", "sd14", "dcgan")
    detector = build_detector(name, classes=classes).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        per_class, fake = detector.class_logits(images), detector(images)
    assert per_class.shape == (2, 3) and fake.shape == (2,)
    assert torch.allclose(fake, torch.logsumexp(per_class[:, 1:], 1) - per_class[:, 0], atol=1e-5)


def test_a_factory_without_num_classes_cannot_attribute_sources(monkeypatch):
    from bench.detector import DetectorSpec

    spec = DetectorSpec("one-logit", lambda: torch.nn.Linear(3 * 32 * 32, 1))
    monkeypatch.setattr(DETECTORS, "get", lambda name: spec)  # not registered: other tests list the registry
    with pytest.raises(ValueError, match="takes no 'num_classes'"):
        build_detector("one-logit", classes=("real", "a", "b"))


def test_a_perturbation_entry_point_without_a_declared_cost_is_refused(caplog):
    """A bare function named by an entry point is not registered: an attack could come in costing nothing."""
    entry_point = types.SimpleNamespace(name="bare-attack", value="their_package:attack",
                                        load=lambda: lambda images, labels, detector, generator: images)
    PERTURBATIONS.load()
    try:
        PERTURBATIONS._load_entry_point(entry_point)
        assert "bare-attack" not in PERTURBATIONS
        assert "register_perturbation(name, gradient_steps=...)" in PERTURBATIONS.broken["bare-attack"]
    finally:
        PERTURBATIONS.broken.pop("bare-attack", None)
