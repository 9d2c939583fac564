"""Generators: plugins that produce a fake source (e.g. a GAN or diffusion model trained by the harness)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bench.registry import Registry


class ImageGenerator(Protocol):
    """A generator instance: optionally fitted on real images, then sampled."""

    def fit(self, real: np.ndarray, seed: int) -> None: ...

    def sample(self, count: int, seed: int) -> np.ndarray:
        """``count`` uint8 images (N, 3, H, W)."""
        ...


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator plugin: ``factory(**config)`` returns an :class:`ImageGenerator`."""

    name: str
    factory: Callable[..., ImageGenerator]
    description: str = ""


def _coerce(name: str, obj: object) -> GeneratorSpec:
    if isinstance(obj, GeneratorSpec):
        return obj
    if callable(obj):
        return GeneratorSpec(name=name, factory=obj, description=(obj.__doc__ or "").strip().split("\n")[0])
    raise TypeError(f"entry point {name!r} must be a GeneratorSpec or a generator factory, got {type(obj)!r}")


GENERATORS: Registry[GeneratorSpec] = Registry("generator", "bench.generators", "generators", coerce=_coerce)


def register_generator(name: str) -> Callable[[Callable[..., ImageGenerator]], Callable[..., ImageGenerator]]:
    """Decorator that registers a generator factory under ``name``."""

    def decorate(factory: Callable[..., ImageGenerator]) -> Callable[..., ImageGenerator]:
        doc = (factory.__doc__ or "").strip().split("\n")[0]
        GENERATORS.register(name, GeneratorSpec(name, factory, doc), origin=factory.__module__)
        return factory

    return decorate
