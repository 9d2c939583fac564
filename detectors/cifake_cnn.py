"""The CNN of the CIFAKE paper (Bird & Lotfi 2023, arXiv:2303.14126)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector("cifake-cnn", recipe=Recipe(epochs=10, batch_size=128, lr=2e-3, augment=("flip",)), cam_layer="4")
def cifake_cnn(filters: int = 32, dense: int = 64, num_classes: int = 1) -> nn.Module:
    """CIFAKE-paper CNN: two 3x3 conv layers of 32 filters with 2x2 max pooling, a 64-unit dense layer.

    Designed for CIFAKE's native 32x32 input, so no adaptation is needed. The paper's best topology
    reported 92.98% test accuracy.
    """
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, filters, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(filters, filters, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(filters * 6 * 6, dense), nn.ReLU(),
        nn.Linear(dense, num_classes),
    )
