"""Perturbations: functions of (images, labels, detector) -> images, applied identically to both classes.

Images are float (B, 3, H, W) tensors in [0, 1]; labels are 0/1 (1 = fake), which adversarial methods
need. Every perturbation takes a seeded ``torch.Generator`` so that random ones are repeatable.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from bench.detector import Detector
from bench.registry import Registry


class Perturbation(Protocol):
    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator, **params
    ) -> torch.Tensor: ...


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation", "bench.perturbations", "bench.perturbations")


def register_perturbation(name: str) -> Callable[[Perturbation], Perturbation]:
    """Decorator that registers a perturbation function under ``name``."""

    def decorate(function: Perturbation) -> Perturbation:
        PERTURBATIONS.register(name, function, origin=function.__module__)
        return function

    return decorate


@register_perturbation("clean")
def clean(images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator) -> torch.Tensor:
    """No perturbation: the images as stored."""
    return images


@register_perturbation("jpeg")
def jpeg(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator, quality: int = 75
) -> torch.Tensor:
    """Re-encode each image as a Pillow JPEG at ``quality`` (1-95) and decode it again."""
    if not 1 <= quality <= 95:
        raise ValueError(f"jpeg quality must be in 1..95, got {quality}")
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(pixels)
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device, images.dtype) / 255
