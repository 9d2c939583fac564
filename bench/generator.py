"""Generators: plugins that produce a fake source (e.g. a GAN or diffusion model trained by the harness).

:func:`generate_source` is the one entry point: it builds a registered generator from its config, trains it
on a real source unless its weights are pretrained, samples images and stores them as a fake source.

Two caches, both keyed by content (:func:`bench.provenance.content_key`):

- the trained model, under ``<data_dir>/generators/<key>.safetensors`` with a ``<key>.json`` sidecar
  (:class:`bench.checkpoints.CheckpointStore`: sha256-checked, corrupt files set aside and retrained), keyed
  by the generator's name and version, its full config except the sampling settings, the training source's
  sha256 and the seed;
- the generated source, keyed by the model key, the sampling settings, the count, the seed and the split,
  recorded in its manifest's ``origin["key"]``: a source of the same name and key is returned as it is.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from bench.provenance import content_key, stamp
from bench.registry import Registry, summary
from bench.sources import NAME_PATTERN, Manifest, SourceError, SourceStore, validate_images

if TYPE_CHECKING:  # torch is imported where used, so that listing and validating generators needs none
    import torch

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when generate_source changes what a cached model or source means
IMAGE_SHAPE = (3, 32, 32)


class GeneratorError(SourceError):
    """A generator cannot produce its source (bad config, missing weights); the message says what to do."""


class ImageGenerator(Protocol):
    """A generator instance. Its factory only records the config; weights are loaded or trained on demand."""

    def pretrained(self) -> dict | None:
        """What identifies ready-made weights (e.g. sha256 of each file), or None if it must be fitted."""
        ...

    def sample(self, count: int, seed: int, device: torch.device, progress: bool | None) -> np.ndarray:
        """``count`` uint8 images (N, 3, 32, 32), the same for the same seed and weights."""
        ...


@runtime_checkable
class TrainableGenerator(ImageGenerator, Protocol):
    """A generator fitted on real images by the harness; its weights are cached as a safetensors checkpoint."""

    def fit(self, real: np.ndarray, seed: int, device: torch.device, progress: bool | None) -> dict:
        """Train on uint8 (N, 3, H, W) real images; returns what training measured (for the sidecar)."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trained weights."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore trained weights from a checkpoint."""
        ...


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator plugin: ``factory(**config)`` returns an :class:`ImageGenerator`.

    ``sampling`` names the config keys that only change sampling (not the trained model); ``version`` is
    part of every cache key, so bumping it invalidates models and sources made by older code.
    """

    name: str
    factory: Callable[..., ImageGenerator]
    description: str = ""
    sampling: tuple[str, ...] = ()
    version: int = 1


GENERATORS: Registry[GeneratorSpec] = Registry(
    "generator", "bench.generators", "bench.generators", spec_type=GeneratorSpec
)


def register_generator(
    name: str, *, sampling: tuple[str, ...] = (), version: int = 1
) -> Callable[[Callable[..., ImageGenerator]], Callable[..., ImageGenerator]]:
    """Decorator that registers a generator factory under ``name``; see :class:`GeneratorSpec`."""

    def decorate(factory: Callable[..., ImageGenerator]) -> Callable[..., ImageGenerator]:
        spec = GeneratorSpec(name, factory, summary(factory), tuple(sampling), version)
        GENERATORS.register(name, spec, origin=factory.__module__)
        return factory

    return decorate


def config_defaults(spec: GeneratorSpec) -> dict[str, object]:
    """The factory's settings and their defaults (``inspect.Parameter.empty`` where one is required)."""
    params = inspect.signature(spec.factory).parameters.values()
    return {p.name: p.default for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def resolve_config(spec: GeneratorSpec, config: dict) -> dict:
    """The full config: ``config`` over the factory's defaults, as JSON values. Unknown keys are an error."""
    defaults = config_defaults(spec)
    allowed = ", ".join(
        k if v is inspect.Parameter.empty else f"{k}={json.dumps(v)}" for k, v in defaults.items()
    ) or "none"
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise GeneratorError(f"generator {spec.name!r} has no setting {', '.join(unknown)}. Settings: {allowed}")
    resolved = {**defaults, **config}
    missing = [k for k, v in resolved.items() if v is inspect.Parameter.empty]
    if missing:
        raise GeneratorError(f"generator {spec.name!r} needs {', '.join(missing)}. Settings: {allowed}")
    try:
        return json.loads(json.dumps(resolved))
    except (TypeError, ValueError) as exc:
        raise GeneratorError(f"generator {spec.name!r}: settings must be JSON values ({exc})") from exc


def training_subset(images: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """``limit`` images drawn without replacement (seeded, in source order), or all of them."""
    if limit is None or limit >= len(images):
        return np.asarray(images)
    if limit < 1:
        raise GeneratorError(f"limit must be at least 1, got {limit}")
    keep = np.sort(np.random.default_rng(seed).choice(len(images), size=limit, replace=False))
    return np.asarray(images[keep])


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] as uint8 numpy (N, C, H, W)."""
    import torch

    return images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def sampling_seed(seed: int, split: str) -> int:
    """The seed images are sampled with: one model serves a train and a test source with different images."""
    return seed if split == "test" else int(content_key([seed, split])[:8], 16)


@dataclass(frozen=True)
class Generation:
    """What a generated source will be: its generator, resolved config and content keys (nothing computed)."""

    spec: GeneratorSpec
    config: dict
    model: ImageGenerator
    weights: dict | None
    trained_on: dict | None
    model_key: str
    source_key: str


def plan_generation(
    data_dir: Path, generator: str, config: dict, train_source: str | None, count: int, seed: int, split: str = "test"
) -> Generation:
    """The keys of a generated source; the training source must be cached (its sha256 is part of the key)."""
    from bench.training import seed_everything

    if count < 1:
        raise GeneratorError(f"count must be at least 1, got {count}")
    spec = GENERATORS.get(generator)
    config = resolve_config(spec, config)
    seed_everything(seed)  # factories may initialise weights
    model = spec.factory(**config)
    weights = model.pretrained()
    trained_on = None
    if weights is None:
        if not isinstance(model, TrainableGenerator):
            raise GeneratorError(f"generator {generator!r} has no pretrained weights and cannot be trained")
        if train_source is None:
            raise GeneratorError(
                f"generator {generator!r} is trained on real images: name a training source (--train-source)"
            )
        trained_on = {"name": train_source, "sha256": SourceStore(data_dir).manifest(train_source).sha256}
    elif train_source is not None:
        log.warning("generator %s uses pretrained weights: training source %s is not used", generator, train_source)
    sampling = {k: config[k] for k in spec.sampling}
    model_key = content_key({
        "generator": generator,
        "version": [CACHE_VERSION, spec.version],
        "config": {k: v for k, v in config.items() if k not in sampling},
        "train_source": trained_on and trained_on["sha256"],
        "weights": weights,
        "seed": seed if weights is None else None,
    })
    source_key = content_key({"model": model_key, "sampling": sampling, "count": count, "seed": seed, "split": split})
    return Generation(spec, config, model, weights, trained_on, model_key, source_key)


def generate_source(
    data_dir: Path,
    generator: str,
    config: dict,
    train_source: str | None,
    count: int,
    seed: int,
    name: str,
    split: str = "test",
    progress: bool | None = None,
    device: str = "auto",
) -> Manifest:
    """Make the fake source ``name``: ``count`` images from ``generator`` (trained on ``train_source``).

    The model is trained unless it is pretrained or cached; a cached source of the same key is returned
    without recomputing anything. Raises :class:`GeneratorError` (a :class:`SourceError`) for unusable input.
    """
    from bench.checkpoints import CheckpointStore
    from bench.training import pick_device

    if not NAME_PATTERN.match(name):  # checked before any training
        raise GeneratorError(f"source name {name!r} is not allowed: use lower-case letters, digits, '.', '_', '-', '@'")
    plan = plan_generation(data_dir, generator, config, train_source, count, seed, split)
    config, model, weights, trained_on, model_key = (plan.config, plan.model, plan.weights, plan.trained_on,
                                                     plan.model_key)
    sampling = {k: config[k] for k in plan.spec.sampling}
    store = SourceStore(data_dir)
    if store.exists(name):
        cached = store.manifest(name)
        if cached.origin.get("key") == plan.source_key:
            return cached
        log.info("source %s was made with other settings: rebuilding it", name)

    device = pick_device(device)
    sample_seed = sampling_seed(seed, split)
    if weights is None:
        checkpoints = CheckpointStore(data_dir, "generators")
        checkpoint = checkpoints.get(model_key)
        if checkpoint is None:
            training = model.fit(store.load(train_source).images, seed, device, progress)
            info = {"generator": generator, "config": config, "train_source": trained_on, "seed": seed,
                    "training": training, "provenance": stamp(seed, str(device))}
            checkpoint = checkpoints.put(model_key, model.state_dict(), info)
        else:
            model.load_state_dict(checkpoint.state_dict())
        model_info = {"key": model_key, "sha256": checkpoint.info["sha256"]}
    else:
        model_info = {"key": model_key, "sha256": content_key(weights), "pretrained": weights}
    images = model.sample(count, sample_seed, device, progress)
    validate_images(images, f"generator {generator!r}")
    if images.shape != (count, *IMAGE_SHAPE):
        raise GeneratorError(
            f"generator {generator!r} returned images of shape {images.shape}, expected {(count, *IMAGE_SHAPE)}"
        )
    origin = {
        "importer": "generator",
        "generator": generator,
        "config": config,
        "train_source": trained_on,
        "model": model_info,
        "sampling": {**sampling, "seed": sample_seed, "count": count},
        "key": plan.source_key,
        "identity": plan.source_key,
        "provenance": stamp(seed, str(device)),
    }
    encoding = {"format": "raw", "lossless": True, "files": {"raw uint8 (generated)": count}}
    files = [f"{generator}@{model_key[:12]}/seed{sample_seed}/{i}" for i in range(count)]
    return store.save(name, np.ascontiguousarray(images), "fake", split, origin, encoding, files)
