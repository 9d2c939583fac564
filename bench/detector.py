"""Detectors: registered factories of models that map images in [0, 1] to one "fake" logit each.

Registering and listing detectors imports no torch; the model wrapper is :class:`bench.model.Detector`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.recipe import Recipe
from bench.registry import Registry, summary

if TYPE_CHECKING:
    from torch import nn

    from bench.model import Detector

CIFAKE_MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10 channel statistics: CIFAKE's reals are CIFAR-10
CIFAKE_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class DetectorSpec:
    """A detector plugin: its factory and metadata.

    ``factory(**kwargs)`` returns an ``nn.Module`` taking normalised (B, 3, H, W) images and returning
    (B, 1) or (B,) logits, "fake" positive. Normalisation is applied by :class:`bench.model.Detector`, so
    attacks and attributions work on pixel values in [0, 1]. A factory that accepts ``num_classes`` (as
    timm's do) can also be trained for source attribution, returning (B, num_classes) logits.
    """

    name: str
    factory: Callable[..., nn.Module]
    input_size: int = 32
    mean: tuple[float, float, float] = CIFAKE_MEAN
    std: tuple[float, float, float] = CIFAKE_STD
    recipe: Recipe = field(default_factory=Recipe)
    description: str = ""
    cam_layer: str | None = None  # submodule for Grad-CAM; None: found by `bench.attribution.cam_layer`

    @property
    def attributes_sources(self) -> bool:
        """Whether the factory takes ``num_classes``, so the detector can be trained for source attribution."""
        return "num_classes" in inspect.signature(self.factory).parameters


DETECTORS: Registry[DetectorSpec] = Registry(
    "detector", "bench.detectors", "bench.detectors", spec_type=DetectorSpec
)


def register_detector(
    name: str,
    *,
    input_size: int = 32,
    mean: tuple[float, float, float] = CIFAKE_MEAN,
    std: tuple[float, float, float] = CIFAKE_STD,
    recipe: Recipe | None = None,
    cam_layer: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model factory as a detector (like timm's ``@register_model``)."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        spec = DetectorSpec(
            name=name,
            factory=factory,
            input_size=input_size,
            mean=mean,
            std=std,
            recipe=recipe or Recipe(),
            description=summary(factory),
            cam_layer=cam_layer,
        )
        DETECTORS.register(name, spec, origin=factory.__module__)
        return factory

    return decorate


def build_detector(
    name: str, pretrained: str | Path | None = None, classes: tuple[str, ...] = (), adapt: str = "resize", **kwargs
) -> Detector:
    """Build a registered detector by name; ``pretrained`` is an optional local safetensors file.

    ``classes`` (real first, then the fake sources) builds a source-attribution model with one output
    per class, for factories that accept ``num_classes``.
    """
    from bench.model import Detector

    spec = DETECTORS.get(name)
    if classes:
        if not spec.attributes_sources:
            raise ValueError(f"detector {name!r} cannot attribute sources: its factory takes no 'num_classes' "
                             "argument; train it without source attribution")
        kwargs = {**kwargs, "num_classes": len(classes)}
    model = spec.factory(**kwargs)
    if pretrained is not None:
        load_pretrained(model, Path(pretrained))
    return Detector(spec, model, tuple(classes), adapt)


def load_pretrained(model: nn.Module, path: Path) -> list[str]:
    """Load weights whose names and shapes match from a safetensors file; return the keys left out.

    Layers adapted to 32x32 input (stems, heads) keep their fresh initialisation. Raises if the file
    matches none of the model's weights, which means it belongs to another architecture.
    """
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path} not found: give the path of a .safetensors file")
    weights = load_file(path)
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(
            f"{path} shares no weight names and shapes with {type(model).__name__}: "
            "it was saved from a different architecture"
        )
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
