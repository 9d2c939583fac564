"""A VGG-style CNN (Simonyan & Zisserman 2015) for CIFAKE, after the seed study's design."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector("vgg-cifake", recipe=Recipe(epochs=10, batch_size=128, lr=1e-3, augment=("flip",)), cam_layer="2")
def vgg_cifake(convs: int = 1, dropout: float = 0.25, num_classes: int = 1) -> nn.Module:
    """VGG-like CNN: 4 blocks of 3x3 convs (64/128/256/512 filters), dense 4000/1500, batch norm and dropout.

    Each block is ``convs`` conv-batch-norm-ReLU layers, 2x2 max pooling and dropout, so 32x32 input ends
    as a 2x2x512 map; the dense layers drop out twice as much. The seed study reported ~95% on CIFAKE test.
    ``convs=2`` stacks two convs per block as VGG itself does, at ~3.5x the compute (~210M vs 58M
    multiply-adds per image).
    """
    from torch import nn

    def block(channels_in: int, channels_out: int) -> nn.Sequential:
        layers = []
        for i in range(convs):
            layers += [nn.Conv2d(channels_in if i == 0 else channels_out, channels_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers, nn.MaxPool2d(2), nn.Dropout(dropout))

    return nn.Sequential(
        block(3, 64), block(64, 128), block(128, 256), block(256, 512),
        nn.Flatten(),
        nn.Linear(512 * 2 * 2, 4000), nn.BatchNorm1d(4000), nn.ReLU(inplace=True), nn.Dropout(2 * dropout),
        nn.Linear(4000, 1500), nn.BatchNorm1d(1500), nn.ReLU(inplace=True), nn.Dropout(2 * dropout),
        nn.Linear(1500, num_classes),
    )
