"""A small plain CNN shaped for fast training on 32x32 images, after the ideas of airbench (Jordan 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector(
    "airbench-cnn",
    recipe=Recipe(epochs=24, batch_size=512, lr=0.2, optimizer="sgd", weight_decay=5e-4, augment=("flip", "shift"),
                  max_shift=2),
    cam_layer="3",
)
def airbench_cnn(widths: Sequence[int] = (64, 256, 256), stem: int = 32, num_classes: int = 1) -> nn.Module:
    """A 3x3 conv stem and three blocks (conv, 2x2 max pool, batch norm, GELU, conv, batch norm, GELU) at
    32, 16 and 8 pixels, then global max pooling and a linear layer: about 0.3 G multiply-adds per image.

    Built for GPU speed runs (large batches, SGD with Nesterov momentum, flips and shifts, bf16): few,
    wide layers, so a step is a handful of large kernels rather than many small ones.
    """
    from torch import nn

    def conv(channels_in: int, channels_out: int) -> list[nn.Module]:
        return [nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out),
                nn.GELU()]

    def block(channels_in: int, channels_out: int) -> nn.Sequential:
        first = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        return nn.Sequential(first, nn.MaxPool2d(2), nn.BatchNorm2d(channels_out), nn.GELU(),
                             *conv(channels_out, channels_out))

    channels = [stem, *(int(w) for w in widths)]
    return nn.Sequential(
        nn.Sequential(*conv(3, stem)),
        *(block(channels[i], channels[i + 1]) for i in range(len(widths))),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels[-1], num_classes),
    )
