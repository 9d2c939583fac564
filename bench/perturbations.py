"""Perturbations: functions of (images, labels, detector) -> images, applied identically to both classes.

Images are float (B, 3, H, W) tensors in [0, 1]; labels are 0/1 (1 = fake), which adversarial methods
need. Every perturbation takes a seeded ``torch.Generator`` so that random ones are repeatable.

Corruptions (jpeg, blur, noise, resize) ignore the detector. Attacks (fgsm, pgd) come from torchattacks
and are untargeted: each image is pushed away from its true label, reals towards "fake" and fakes
towards "real", within an L-infinity budget ``eps`` on pixel values in [0, 1]. ``eps`` may be written as
a fraction of 8-bit levels, e.g. ``"8/255"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import torch
import torch.nn.functional as F
import torchattacks
import torchvision.transforms.v2.functional as TF
from torch import nn

from bench.detector import Detector
from bench.encoding import jpeg_roundtrip
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
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return torch.from_numpy(jpeg_roundtrip(pixels, quality)).to(images.device, images.dtype) / 255


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


def pixel_budget(value: float | str) -> float:
    """A budget on pixel values in [0, 1], given as a number or a fraction such as ``"8/255"``."""
    try:
        budget = float(Fraction(value) if isinstance(value, str) else value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"expected a number or a fraction like '8/255', got {value!r}") from None
    if not 0 <= budget <= 1:
        raise ValueError(f"a pixel budget must lie in [0, 1] (e.g. '8/255'), got {value!r}")
    return budget


class TwoClassLogits(nn.Module):
    """A detector's single "fake" logit z as two-class logits (0, z), the form torchattacks attacks.

    Cross-entropy on (0, z) is the detector's binary cross-entropy, so the attack follows its gradient.
    """

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.detector(images)
        return torch.stack([torch.zeros_like(logits), logits], dim=1)


def _attack(attack: torchattacks.Attack, images: torch.Tensor, labels: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
    """Run ``attack`` in float32 with the global RNG (used by random starts) seeded from ``generator``."""
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.autocast(images.device.type, enabled=False):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=generator.device)))
        return attack(images.float(), labels.long()).to(images.dtype)


@register_perturbation("fgsm")
def fgsm(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator,
    eps: float | str = "4/255",
) -> torch.Tensor:
    """FGSM (Goodfellow et al. 2015): one signed-gradient step of size ``eps``."""
    budget = pixel_budget(eps)
    if budget == 0:
        return images
    return _attack(torchattacks.FGSM(TwoClassLogits(detector), eps=budget), images, labels, generator)


@register_perturbation("pgd")
def pgd(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator,
    eps: float | str = "4/255", steps: int = 10, step: float | str | None = None, random_start: bool = True,
) -> torch.Tensor:
    """PGD (Madry et al. 2018): ``steps`` signed-gradient steps of ``step`` (default eps/4) within ``eps``."""
    budget = pixel_budget(eps)
    if steps < 1:
        raise ValueError(f"pgd steps must be >= 1, got {steps}")
    if budget == 0:
        return images
    alpha = budget / 4 if step is None else pixel_budget(step)
    attack = torchattacks.PGD(TwoClassLogits(detector), eps=budget, alpha=alpha, steps=steps,
                              random_start=random_start)
    return _attack(attack, images, labels, generator)
