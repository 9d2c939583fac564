"""Detector models: a plugin's network with its normalisation inside, mapping pixels in [0, 1] to "fake" logits.

Kept apart from :mod:`bench.detector` (the registry) because it imports torch, which listing and
validating plugins must not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from bench.detector import DetectorSpec


class Detector(nn.Module):
    """A detector model with its normalisation inside: input pixels in [0, 1], output (B,) "fake" logits.

    With ``classes`` (source attribution: class 0 is real, the others are the fake sources) the model has
    one output per class; the "fake" logit is then the log-odds of "not real",
    ``logsumexp(z[1:]) - z[0]``, so detection metrics, attacks and attributions work unchanged.
    """

    def __init__(self, spec: DetectorSpec, model: nn.Module, classes: tuple[str, ...] = (),
                 adapt: str = "resize") -> None:
        super().__init__()
        self.spec = spec
        self.model = model
        self.classes = classes
        self.adapt = adapt  # how images of another size reach spec.input_size: "resize" or "center-crop"
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    def class_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, number of classes) logits of a source-attribution model."""
        images = fit_size(images, self.spec.input_size, self.adapt)
        return self.model((images - self.mean) / self.std).reshape(images.shape[0], max(len(self.classes), 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return fake_logits(self.class_logits(images))


def fit_size(images: torch.Tensor, size: int, method: str = "resize") -> torch.Tensor:
    """(B, 3, H, W) images at ``size`` x ``size``: centre-cropped (``center-crop``, larger images only) or
    resized (bilinear, antialiased); unchanged if they already fit."""
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return images
    if method == "center-crop" and height >= size and width >= size:
        top, left = (height - size) // 2, (width - size) // 2
        return images[..., top : top + size, left : left + size]
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)


def fake_logits(class_logits: torch.Tensor) -> torch.Tensor:
    """(B,) "fake" logits from (B, classes) outputs: the one logit of a detector, or, for source attribution
    (class 0 = real), the log-odds of "not real", ``logsumexp(z[1:]) - z[0]``."""
    if class_logits.shape[1] == 1:
        return class_logits[:, 0]
    return torch.logsumexp(class_logits[:, 1:].float(), dim=1) - class_logits[:, 0].float()


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
