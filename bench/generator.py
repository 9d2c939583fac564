"""Generators: plugins that produce a fake source (e.g. a GAN or diffusion model trained by the harness)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bench.registry import Registry, summary


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


GENERATORS: Registry[GeneratorSpec] = Registry("generator", "bench.generators", "generators", spec_type=GeneratorSpec)


def register_generator(name: str) -> Callable[[Callable[..., ImageGenerator]], Callable[..., ImageGenerator]]:
    """Decorator that registers a generator factory under ``name``."""

    def decorate(factory: Callable[..., ImageGenerator]) -> Callable[..., ImageGenerator]:
        GENERATORS.register(name, GeneratorSpec(name, factory, summary(factory)), origin=factory.__module__)
        return factory

    return decorate
