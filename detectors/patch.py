"""Patch classifier (Chai, Bau, Lim & Isola, ECCV 2020, "What makes fake images detectable? Understanding
properties that generalize", arXiv:2008.10588).

A network truncated early has a small receptive field, so it sees local patches rather than whole objects: it
classifies each patch, and the image's decision is the average over patches. Chai et al. found such local
artifacts generalize across generators better than a full network's global view, and their per-patch
predictions show where an image looks fake.

What differs here: the paper truncates ResNet and Xception backbones after early blocks (receptive fields of
tens of pixels on 128-299 pixel faces and scenes) and trains them on each patch's own loss. Here the input is
CIFAKE's 32x32: four 3x3 convolutions without padding (the second strided) give a 13-pixel receptive field
and a 10x10 grid of patches; a 1x1 convolution makes one logit per patch (per class for source attribution)
and the patch logits are averaged into the image's. The harness's one training loop takes the loss on that
average, not on each patch. Trained from scratch on CIFAKE, with no pretrained weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector("patch-classifier", recipe=Recipe(epochs=10, batch_size=128, lr=2e-3, augment=("flip",)),
                   cam_layer="patches")
def patch_classifier(widths: Sequence[int] = (32, 64, 64, 64), num_classes: int = 1) -> nn.Module:
    """Patch classifier (Chai et al. 2020): logits of 13x13-pixel patches from a 4-layer CNN, averaged per image.

    Grad-CAM at its ``patches`` layer (the 10x10 map of patch logits) is the map of patch decisions, scaled.
    About 13M multiply-adds per 32x32 image.
    """
    from collections import OrderedDict

    from torch import nn

    def conv(channels_in: int, channels_out: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(channels_in, channels_out, 3, stride=stride, bias=False), nn.BatchNorm2d(channels_out),
                nn.ReLU(inplace=True)]

    if len(widths) != 4:
        raise ValueError(f"patch-classifier takes four widths (one per 3x3 convolution), got {tuple(widths)}")
    channels = [3, *(int(w) for w in widths)]
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(*(layer for i in range(4) for layer in conv(channels[i], channels[i + 1],
                                                                           stride=2 if i == 1 else 1))),
        patches=nn.Conv2d(channels[-1], num_classes, 1),
        mean=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
    ))
