"""LeNet-5 (LeCun et al. 1998)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector("lenet", recipe=Recipe(epochs=10, batch_size=128, lr=2e-3, augment=("flip",)), cam_layer="4")
def lenet(num_classes: int = 1) -> nn.Module:
    """LeNet-5 on 3-channel 32x32 input, its native size; ReLU and max pooling instead of tanh/subsampling."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )
