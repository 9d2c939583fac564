"""Detector models: the protocol every detector model follows (:class:`DetectorModel`), and the network detector
(:class:`Detector`): a plugin's network with its normalisation inside, mapping pixels in [0, 1] to "fake" logits.

Kept apart from :mod:`bench.detector` (the registry) because it imports torch, which listing and
validating plugins must not.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from bench.detector_spec import DetectorSpec

SCORE_BATCH = 1024  # images per forward pass when scoring


class DetectorModel(Protocol):
    """What the harness asks of a detector model, network or not: scores of uint8 pixels, a checkpoint state, and
    whether gradients flow from its logits to the pixels. How a model learns is the trainer's affair
    (:mod:`bench.training`), chosen by ``differentiable``.

    A network (:class:`Detector`) is also an ``nn.Module`` mapping float pixels in [0, 1] to logits, which
    attacks and attributions differentiate; an estimator (:class:`bench.estimator.EstimatorDetector`) is not.
    """

    spec: DetectorSpec
    classes: tuple[str, ...]  # source attribution: "real", then the fake sources; () for a detector
    adapt: str  # how images of another size reach spec.input_size: "resize" or "center-crop"
    differentiable: ClassVar[bool]  # gradients reach the pixels: gradient attacks and attributions apply

    def outputs(self, pixels: np.ndarray | torch.Tensor, device: torch.device | None = None,
                batch_size: int = SCORE_BATCH) -> np.ndarray:
        """Scores of uint8 (N, 3, H, W) pixels (an array, or a tensor on any device), computed on ``device``: (N,)
        "fake" logits, or (N, classes) class logits for a source-attribution model."""
        ...

    def logits(self, pixels: np.ndarray | torch.Tensor, device: torch.device | None = None,
               batch_size: int = SCORE_BATCH) -> np.ndarray:
        """(N,) "fake" logits of uint8 (N, 3, H, W) pixels, computed on ``device``."""
        ...

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores of the fitted model: named CPU tensors (safetensors, never a pickle)."""
        ...

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Take the fitted model back from what :meth:`state` returned."""
        ...


def detection_scores(outputs: np.ndarray) -> np.ndarray:
    """(N,) "fake" logits from :meth:`DetectorModel.outputs`, per class or not (see :func:`fake_logits`)."""
    return outputs if outputs.ndim == 1 else fake_logits(torch.from_numpy(outputs)).numpy()


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on other devices."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


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

    differentiable: ClassVar[bool] = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return fake_logits(self.class_logits(images))

    @torch.no_grad()
    def outputs(self, pixels: np.ndarray | torch.Tensor, device: torch.device | None = None,
                batch_size: int = SCORE_BATCH) -> np.ndarray:
        """Scores of uint8 pixels in batches, in eval mode (bf16 autocast on CUDA): (N,) "fake" logits, or
        (N, classes) for source attribution. ``device`` None: where the model's parameters are."""
        device = device or next(self.parameters()).device
        self.eval().to(device)
        if isinstance(pixels, torch.Tensor):
            data = pixels
        else:  # the whole array on the device at once, as training holds it
            data = torch.tensor(np.asarray(pixels), device=device)
            data = data.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else data
        forward = self.class_logits if self.classes else self
        out = []
        for start in range(0, len(data), batch_size):
            batch = data[start : start + batch_size].to(device).float().div_(255)
            with autocast(device):
                out.append(forward(batch).float().cpu())
        if not out:
            return np.empty((0, len(self.classes)) if self.classes else 0, np.float32)
        return torch.cat(out).numpy()

    def logits(self, pixels: np.ndarray | torch.Tensor, device: torch.device | None = None,
               batch_size: int = SCORE_BATCH) -> np.ndarray:
        return detection_scores(self.outputs(pixels, device, batch_size))

    def state(self) -> dict[str, torch.Tensor]:
        return {key: value.detach().cpu().clone() for key, value in self.model.state_dict().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


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
