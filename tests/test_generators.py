"""Generator plugins end to end on tiny configurations: training, caching, pretrained pipelines, offline errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import linked_sources
from PIL import Image

from bench.cli import main
from bench.generator import GeneratorError, generate_source
from bench.generators.dcgan import DCGAN
from bench.generators.ddpm import DDPM
from bench.sources import SourceStore

TINY_DCGAN = {"width": 8, "epochs": 1, "batch_size": 64, "limit": 128}
TINY_DDPM = {"block_out_channels": [8, 16], "layers_per_block": 1, "epochs": 1, "batch_size": 64, "limit": 128,
             "train_timesteps": 100, "steps": 2}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def data_dir(tmp_path: Path, cifake: SourceStore) -> Path:
    """A fresh cache holding 512 real CIFAKE training images as the source ``real``."""
    real = cifake.load("cifake-real-train")
    SourceStore(tmp_path).save("real", np.asarray(real.images[:512]), "real", "train", {"importer": "test"},
                               real.manifest.encoding, list(real.files[:512]))
    return tmp_path


@pytest.fixture
def fits(monkeypatch) -> list[str]:
    """The names of the generators fitted during a test."""
    calls = []
    for cls in (DCGAN, DDPM):
        original = cls.fit

        def counted(self, *args, original=original, cls=cls, **kwargs):
            calls.append(cls.__name__)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", counted)
    return calls


def model_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "generators").iterdir())


def test_dcgan_trains_samples_and_serves_the_source_from_cache(data_dir: Path, fits: list[str]):
    manifest = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 40, 3, "dcgan-tiny", progress=False)
    source = SourceStore(data_dir).load("dcgan-tiny")
    assert source.images.dtype == np.uint8 and source.images.shape == (40, 3, 32, 32)
    assert source.images.std() > 0
    assert (manifest.label, manifest.split, manifest.count) == ("fake", "test", 40)
    origin = manifest.origin
    assert origin["importer"] == "generator" and origin["generator"] == "dcgan"
    assert origin["config"] == {"latent": 100, "width": 8, "epochs": 1, "batch_size": 64, "limit": 128,
                                "lr": 2e-4, "beta1": 0.5}
    real_sha = SourceStore(data_dir).manifest("real").sha256
    assert origin["train_source"] == {"name": "real", "sha256": real_sha}
    assert origin["sampling"] == {"seed": 3, "count": 40}
    assert manifest.encoding["format"] == "raw" and manifest.encoding["lossless"] is True
    key = origin["model"]["key"]
    assert model_files(data_dir) == [f"{key}.json", f"{key}.safetensors"]
    sidecar = json.loads((data_dir / "generators" / f"{key}.json").read_text())
    assert sidecar["sha256"] == origin["model"]["sha256"] and sidecar["training"]["n_train"] == 128
    assert fits == ["DCGAN"]

    again = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 40, 3, "dcgan-tiny", progress=False)
    assert again == manifest and fits == ["DCGAN"]  # the same source, nothing recomputed

    more = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 50, 3, "dcgan-more", progress=False)
    assert fits == ["DCGAN"] and more.origin["model"] == origin["model"]  # the cached model samples again
    assert np.array_equal(SourceStore(data_dir).load("dcgan-more").images[:40], source.images)


def test_train_and_test_sources_share_the_model_but_not_the_images(data_dir: Path, fits: list[str]):
    test = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 16, 0, "g-test", split="test", progress=False)
    train = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 16, 0, "g-train", split="train", progress=False)
    assert fits == ["DCGAN"] and train.origin["model"] == test.origin["model"]
    assert train.split == "train" and train.origin["sampling"]["seed"] != test.origin["sampling"]["seed"]
    store = SourceStore(data_dir)
    train_images, test_images = store.load("g-train").images, store.load("g-test").images
    assert not any((image == test_images).all(axis=(1, 2, 3)).any() for image in train_images)


def test_dcgan_is_deterministic_on_cpu(data_dir: Path, tmp_path_factory, cifake: SourceStore):
    other = tmp_path_factory.mktemp("other")
    SourceStore(other).save("real", np.asarray(SourceStore(data_dir).load("real").images), "real", "train",
                            {"importer": "test"}, {}, [str(i) for i in range(512)])
    first = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 16, 0, "g", progress=False)
    second = generate_source(other, "dcgan", TINY_DCGAN, "real", 16, 0, "g", progress=False)
    assert first.sha256 == second.sha256 and first.origin["model"] == second.origin["model"]


def test_a_changed_setting_changes_the_key_and_rebuilds_the_source(data_dir: Path, fits: list[str]):
    first = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 8, 0, "g", progress=False)
    changed = generate_source(data_dir, "dcgan", {**TINY_DCGAN, "lr": 1e-3}, "real", 8, 0, "g", progress=False)
    assert changed.origin["model"]["key"] != first.origin["model"]["key"]
    assert changed.origin["key"] != first.origin["key"] and changed.origin["config"]["lr"] == 1e-3
    assert SourceStore(data_dir).manifest("g") == changed and fits == ["DCGAN", "DCGAN"]
    reseeded = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 8, 1, "g", progress=False)
    assert reseeded.origin["model"]["key"] not in (first.origin["model"]["key"], changed.origin["model"]["key"])
    assert len(model_files(data_dir)) == 6


def test_a_corrupt_cached_model_is_set_aside_and_retrained(data_dir: Path, fits: list[str]):
    first = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 8, 0, "a", progress=False)
    weights = data_dir / "generators" / f"{first.origin['model']['key']}.safetensors"
    weights.write_bytes(b"<html>not a model</html>")
    second = generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 8, 0, "b", progress=False)
    assert fits == ["DCGAN", "DCGAN"]
    assert weights.with_suffix(".safetensors.corrupt").is_file()
    assert second.origin["model"] == first.origin["model"] and second.sha256 == first.sha256


def test_ddpm_trains_a_small_unet_and_a_sampling_change_reuses_it(data_dir: Path, fits: list[str]):
    ddim = generate_source(data_dir, "ddpm", TINY_DDPM, "real", 6, 0, "ddpm-ddim", progress=False)
    images = SourceStore(data_dir).load("ddpm-ddim").images
    assert images.dtype == np.uint8 and images.shape == (6, 3, 32, 32)
    assert ddim.origin["sampling"] == {"sampler": "ddim", "steps": 2, "seed": 0, "count": 6}
    assert ddim.origin["config"]["attention"] is True and ddim.origin["config"]["train_timesteps"] == 100
    key = ddim.origin["model"]["key"]
    sidecar = json.loads((data_dir / "generators" / f"{key}.json").read_text())
    assert sidecar["training"]["unet_config"]["block_out_channels"] == [8, 16]

    dpm = generate_source(data_dir, "ddpm", {**TINY_DDPM, "sampler": "dpm", "steps": 3}, "real", 6, 0, "ddpm-dpm",
                          progress=False)
    assert fits == ["DDPM"] and dpm.origin["model"] == ddim.origin["model"]
    assert dpm.origin["key"] != ddim.origin["key"] and dpm.sha256 != ddim.sha256


def test_ddpm_samples_a_pretrained_pipeline_from_a_local_folder(tmp_path: Path, fits: list[str]):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(tmp_path / "pipe")
    config = {"pretrained": str(tmp_path / "pipe"), "steps": 2, "sampler": "dpm"}
    manifest = generate_source(tmp_path / "cache", "ddpm", config, None, 5, 0, "ddpm-pretrained", progress=False)
    assert SourceStore(tmp_path / "cache").load("ddpm-pretrained").images.shape == (5, 3, 32, 32)
    assert manifest.origin["train_source"] is None and fits == []
    assert "unet/diffusion_pytorch_model.safetensors" in manifest.origin["model"]["pretrained"]
    assert not (tmp_path / "cache" / "generators").exists()  # nothing trained, nothing cached

    (tmp_path / "pipe" / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(DDPMScheduler(num_train_timesteps=50).config))
    changed = generate_source(tmp_path / "cache", "ddpm", config, None, 5, 0, "ddpm-pretrained", progress=False)
    assert changed.origin["model"]["key"] != manifest.origin["model"]["key"]  # the folder's content is the key


def tiny_stable_diffusion(folder: Path) -> None:
    """A randomly initialised Stable Diffusion pipeline, a few hundred kB, saved with save_pretrained."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    words = ["a", "photograph", "of", "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
             "ship", "truck"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(set("".join(words))):
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(f"{char}</w>", len(vocab))
    merges = []
    for word in words:  # merge each word left to right into one token
        left = word[0]
        for i, char in enumerate(word[1:], 1):
            right = char + ("</w>" if i == len(word) - 1 else "")
            if (left, right) not in merges:
                merges.append((left, right))
            left += right
            vocab.setdefault(left, len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)
    assert tokenizer.tokenize("a photograph of a cat") == ["a</w>", "photograph</w>", "of</w>", "a</w>", "cat</w>"]
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))
    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, cross_attention_dim=16,
        attention_head_dim=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )
    StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(folder)


def test_stable_diffusion_runs_a_local_pipeline_with_one_prompt_per_class(tmp_path: Path, monkeypatch):
    from diffusers import StableDiffusionPipeline

    tiny_stable_diffusion(tmp_path / "sd")
    prompts = []
    original = StableDiffusionPipeline.__call__

    def spy(self, *args, **kwargs):
        prompts.extend(kwargs["prompt"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", spy)
    config = {"model": str(tmp_path / "sd"), "size": 64, "steps": 2, "batch_size": 6}
    manifest = generate_source(tmp_path / "cache", "stable-diffusion", config, None, 12, 0, "sd-tiny", progress=False)
    images = SourceStore(tmp_path / "cache").load("sd-tiny").images
    assert images.dtype == np.uint8 and images.shape == (12, 3, 32, 32)
    assert prompts[:3] == ["a photograph of a airplane", "a photograph of a automobile", "a photograph of a bird"]
    assert prompts[10:] == prompts[:2] and len(prompts) == 12
    assert manifest.origin["sampling"] == {"prompt": "a photograph of a {class}", "size": 64, "steps": 2,
                                           "guidance_scale": 7.5, "sampler": None, "seed": 0, "count": 12}
    assert "unet/diffusion_pytorch_model.safetensors" in manifest.origin["model"]["pretrained"]


@pytest.mark.parametrize(("generator", "setting"), [("stable-diffusion", "model"), ("ddpm", "pretrained")])
def test_an_offline_hub_id_fails_with_a_clear_message(tmp_path: Path, monkeypatch, generator: str, setting: str):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GeneratorError) as error:
        generate_source(tmp_path, generator, {setting: "bench-tests/no-such-model"}, None, 4, 0, "x", progress=False)
    message = str(error.value)
    assert "'bench-tests/no-such-model'" in message and "save_pretrained(DIR)" in message
    assert f"--set {setting}=DIR" in message


def test_bad_input_is_refused_with_what_to_do(data_dir: Path):
    with pytest.raises(GeneratorError, match=r"no setting widht\. Settings: latent=100, width=64"):
        generate_source(data_dir, "dcgan", {"widht": 8}, "real", 4, 0, "x")
    with pytest.raises(GeneratorError, match="name a training source"):
        generate_source(data_dir, "dcgan", TINY_DCGAN, None, 4, 0, "x")
    with pytest.raises(GeneratorError, match="unknown sampler 'euler'"):
        generate_source(data_dir, "ddpm", {"sampler": "euler"}, "real", 4, 0, "x")
    with pytest.raises(GeneratorError, match="'Bad Name' is not allowed"):
        generate_source(data_dir, "dcgan", TINY_DCGAN, "real", 4, 0, "Bad Name")
    with pytest.raises(GeneratorError, match="no such folder"):
        generate_source(data_dir, "ddpm", {"pretrained": str(data_dir / "missing")}, None, 4, 0, "x")


@pytest.mark.parametrize("command", [["generate"], ["show"]])
def test_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_generate_and_show_on_the_command_line(data_dir: Path, tmp_path_factory):
    result = invoke("generate", "dcgan", "--train-source", "real", "--count", "20", "--seed", "1", "--name",
                    "dcgan-cli", "--set", "width=8", "--set", "epochs=1", "--set", "limit=128", "--no-progress",
                    "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    manifest = SourceStore(data_dir).manifest("dcgan-cli")
    assert result.output == f"dcgan-cli: 20 images, sha256 {manifest.sha256[:12]}\n"
    assert manifest.origin["config"]["limit"] == 128 and manifest.origin["sampling"]["seed"] == 1

    out = tmp_path_factory.mktemp("show") / "grid.png"
    shown = invoke("show", "dcgan-cli", "--out", out, "--count", "9", "--data-dir", data_dir)
    assert shown.exit_code == 0, shown.output
    with Image.open(out) as grid:
        assert grid.size == (3 * 130 + 2, 3 * 130 + 2)  # 3x3 images of 128 pixels with 2-pixel gaps
        pixels = np.asarray(grid)
    first = SourceStore(data_dir).load("dcgan-cli").images[0].transpose(1, 2, 0)
    assert np.array_equal(pixels[2:130:4, 2:130:4], first)


def test_generate_errors_exit_non_zero_with_a_message(data_dir: Path):
    unknown = invoke("generate", "dcgn", "--train-source", "real", "--count", "4", "--name", "x",
                     "--data-dir", data_dir)
    assert unknown.exit_code == 1 and "Did you mean 'dcgan'" in unknown.output
    bad_key = invoke("generate", "dcgan", "--train-source", "real", "--count", "4", "--name", "x", "--set", "depth=3",
                     "--data-dir", data_dir)
    assert bad_key.exit_code == 1 and "no setting depth" in bad_key.output and "batch_size=128" in bad_key.output
    missing = invoke("generate", "dcgan", "--train-source", "nothing", "--count", "4", "--name", "x", "--data-dir",
                     data_dir)
    assert missing.exit_code == 1 and "'nothing' is not in" in missing.output
    not_pair = invoke("generate", "dcgan", "--count", "4", "--name", "x", "--set", "width", "--data-dir", data_dir)
    assert not_pair.exit_code == 2 and "key=value" in not_pair.output
    no_source = invoke("show", "nothing", "--out", data_dir / "x.png", "--data-dir", data_dir)
    assert no_source.exit_code == 1 and "not in" in no_source.output


SUITE_DCGAN = {"width": 16, "epochs": 2, "batch_size": 64, "limit": 1024}  # distinct images, unlike TINY_DCGAN's
SUITE_WITH_GENERATORS = {
    "name": "generated",
    "sources": {
        "cifake-real-train": {"importer": "cifake", "split": "train", "label": "real"},
        "cifake-sd14-train": {"importer": "cifake", "split": "train", "label": "fake"},
        "cifake-real-test": {"importer": "cifake", "split": "test", "label": "real"},
        "cifake-sd14-test": {"importer": "cifake", "split": "test", "label": "fake"},
        "dcgan-train": {"importer": "generator", "generator": "dcgan", "config": SUITE_DCGAN,
                        "train_source": "cifake-real-train", "count": 300, "split": "train", "label": "fake"},
        "dcgan-test": {"importer": "generator", "generator": "dcgan", "config": SUITE_DCGAN,
                       "train_source": "cifake-real-train", "count": 60, "split": "test", "label": "fake"},
    },
    "train": [{"name": "sd14", "real": ["cifake-real-train"], "fake": ["cifake-sd14-train"], "limit": 400},
              {"name": "sd14+dcgan", "real": ["cifake-real-train"], "fake": ["cifake-sd14-train", "dcgan-train"],
               "limit": 400},
              {"name": "which-source", "real": ["cifake-real-train"], "fake": ["cifake-sd14-train", "dcgan-train"],
               "limit": 400, "attribute_sources": True}],
    "test": {"real": "cifake-real-test", "fake": ["*"], "limit": 60},
    "detectors": [{"name": "lenet"}],
    "recipe": {"epochs": 4},
    "bootstrap": 0,
}


def test_a_suite_generates_its_sources_and_trains_on_several_fakes(cifake_dir, tmp_path, fits):
    from bench.runner import Runner
    from bench.suite import Suite

    cache = linked_sources(cifake_dir, tmp_path / "cache")
    summary = Runner(cache, tmp_path / "results", device="cpu", progress=False).run(
        Suite.model_validate(SUITE_WITH_GENERATORS))
    assert fits == ["DCGAN"]  # one model serves the train and the test source
    cells = {(r.train.name, r.test.name): r for r in summary.records}
    assert set(cells) == {(t, f) for t in ("sd14", "sd14+dcgan", "which-source")
                          for f in ("cifake-sd14-test", "dcgan-test")}
    mixed = cells[("sd14+dcgan", "dcgan-test")].train.fake.sources
    # the limit of 400 fakes is shared equally between the two sources
    assert [(s.name, s.drawn) for s in mixed] == [("cifake-sd14-train", 200), ("dcgan-train", 200)]
    assert mixed[1].encoded == "re-encoded as JPEG q75 4:2:0"  # lossless fakes get the reals' encoding
    assert mixed[0].encoded == "as stored (already JPEG q75 4:2:0)"
    tested = cells[("sd14", "dcgan-test")].test.fake
    assert 0 < tested.count == 60 - tested.removed_duplicates  # repeats, and copies of training fakes, dropped
    assert tested.sources[0].encoded.startswith("re-encoded")
    markdown = summary.leaderboard["markdown"].read_text()
    assert "## Cross-source matrix" in markdown and "## Source attribution" in markdown
    page = (tmp_path / "results" / "leaderboard.html").read_text()
    assert "Source attribution: lenet trained on which-source (seed 0)" in page and "<td>dcgan-test</td>" in page
    assert cells[("sd14+dcgan", "dcgan-test")].source_attribution is None
    attributed = cells[("which-source", "dcgan-test")]
    assert attributed.source_attribution.classes == ["real", "cifake-sd14-train", "dcgan-train"]
    dcgan = attributed.source_attribution.predicted["dcgan-test"]
    assert sum(dcgan.values()) == attributed.n_fake
    assert dcgan["dcgan-train"] / attributed.n_fake > 0.8  # the DCGAN's images are told apart from SD's
    real = attributed.source_attribution.predicted["real"]
    assert sum(real.values()) == attributed.n_real and real["real"] > real["dcgan-train"]
    assert attributed.training.val["source_accuracy"] > 0.5


def test_a_dry_run_estimates_generation_without_writing(cifake_dir, data_root, tmp_path, fits):
    from bench.runner import Runner
    from bench.suite import Suite

    cache = linked_sources(cifake_dir, tmp_path / "cache")
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    dry = Runner(cache, tmp_path / "results", data_root, device="cpu", progress=False).dry_run(
        Suite.model_validate(SUITE_WITH_GENERATORS))
    assert dry.plan is None and set(dry.estimate.generate) == {"dcgan-train", "dcgan-test"}
    # the one model is trained once, charged to the first source; the other only samples
    assert dry.estimate.generate["dcgan-train"] > dry.estimate.generate["dcgan-test"] > 0
    assert "generating sources" in dry.summary() and "dcgan-train" in dry.summary()
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before and not (tmp_path / "results").exists()


def test_generation_estimate_scales_timed_steps_to_epochs_images_and_sampling_steps(monkeypatch):
    import bench.estimate

    monkeypatch.setattr(bench.estimate, "_at_batch", lambda run, batch_size: 0.5)  # seconds per timed call
    train, sample = bench.estimate.generation_seconds(
        "ddpm", {"epochs": 3, "batch_size": 100, "steps": 8, "block_out_channels": [8, 16], "layers_per_block": 1},
        n_train=1050, counts=[250, 50], device="cpu")
    assert train == pytest.approx(3 * 11 * 0.5 / 2)  # 11 batches per epoch; a timed call is two training steps
    assert sample == pytest.approx((3 + 1) * 0.5 * 8 / 2)  # 3 + 1 batches, timed with 2 of the 8 steps
    assert bench.estimate.generation_seconds("ddpm", {"pretrained": "some/folder"}, 100, [10]) is None
