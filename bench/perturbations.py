"""Perturbations: functions of (images, labels, detector) -> images, applied identically to both classes.

Images are float (B, 3, H, W) tensors in [0, 1]; labels are 0/1 (1 = fake), which adversarial methods
need. Every perturbation takes a seeded ``torch.Generator`` so that random ones are repeatable.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
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


@register_perturbation("blur")
def blur(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator, sigma: float = 1.0
) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel of 2*ceil(3*sigma)+1 pixels)."""
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return images
    size = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(images, kernel_size=[size, size], sigma=[sigma, sigma])


@register_perturbation("noise")
def noise(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator, sigma: float = 0.05
) -> torch.Tensor:
    """Additive Gaussian noise of standard deviation ``sigma`` (pixel values in [0, 1]), then clipped."""
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    draw = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + sigma * draw).clamp(0, 1)


@register_perturbation("resize")
def resize(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator, scale: float = 0.5
) -> torch.Tensor:
    """Downscale by ``scale`` (antialiased bilinear), then upscale back to the original size."""
    if not 0 < scale <= 1:
        raise ValueError(f"resize scale must be in (0, 1], got {scale}")
    height, width = images.shape[-2:]
    small = F.interpolate(images, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
