"""AlexNet (Krizhevsky et al. 2012) from torchvision."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector(
    "alexnet", recipe=Recipe(epochs=10, batch_size=128, lr=5e-4, augment=("flip",)),
    cam_layer="features.11",
)
def alexnet(dropout: float = 0.5, num_classes: int = 1) -> nn.Module:
    """torchvision AlexNet with a 3x3 stride-1 stem for 32x32 input.

    The ImageNet stem (11x11, stride 4) shrinks 32x32 to 7x7 and the third max pool then has nothing to
    pool, so the stem is replaced; the rest, including the 6x6 adaptive pool and classifier, is unchanged.
    Upsampling to 224x224 instead would cost ~50x the compute for no new information.
    """
    from torch import nn
    from torchvision.models import alexnet as tv_alexnet

    model = tv_alexnet(weights=None, num_classes=num_classes, dropout=dropout)
    model.features[0] = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1)
    return model
