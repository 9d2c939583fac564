"""NPR: neighbouring pixel relationships (Tan et al., CVPR 2024, "Rethinking the Up-Sampling Operations in
CNN-based Generative Network for Generalizable Deepfake Detection", arXiv:2312.10461).

Generators up-sample, and up-sampling ties each pixel to its neighbours in 2x2 blocks. NPR exposes that tie:
the residual between the image and its nearest-neighbour down(x0.5)-then-up(x2)-sampled copy, i.e. each
pixel minus the top-left pixel of its 2x2 block, classified by a truncated ResNet.

What differs here: the paper feeds 224x224 crops to the first two stages of a ResNet-50 (Bottleneck blocks,
64/128 planes, a stride-2 stem and max pooling) trained on ProGAN images. Here the input is CIFAKE's 32x32, so
the network is a small residual net of torchvision BasicBlocks (two stages, 32 and 64 channels by default)
after a stride-2 3x3 stem with no max pooling: stages at 16 and 8 pixels. It is trained from scratch on
CIFAKE, with no pretrained weights. The paper's fixed 2/3 scaling of the residual is left out: the stem's
batch norm undoes any scale. The detector receives normalised images, ``(x - mean) / std`` per channel; nearest
re-sampling commutes with a per-channel affine map and reproduces constants, so NPR of the normalised image is
the pixel-space NPR divided by ``std`` per channel, which the stem's weights absorb.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    import torch
    from torch import nn


def npr_residual(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images minus their nearest-neighbour down(x0.5)-then-up(x2)-sampled copy: each pixel minus the
    top-left pixel of its 2x2 block (zero there). Odd sizes keep their last row/column's partial block."""
    height, width = images.shape[-2:]
    blocks = images[..., ::2, ::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return images - blocks[..., :height, :width]


@register_detector("npr", recipe=Recipe(epochs=10, batch_size=128, lr=2e-3, augment=("flip",)), cam_layer="layer2")
def npr(widths: Sequence[int] = (32, 64), blocks: Sequence[int] = (2, 2), num_classes: int = 1) -> nn.Module:
    """NPR (Tan et al. 2024): the 2x2 nearest-neighbour up-sampling residual, classified by a two-stage ResNet.

    A stride-2 3x3 stem, then ``blocks`` BasicBlocks per stage at ``widths`` channels (the second stage at
    stride 2), global average pooling and a linear layer: about 18M multiply-adds per 32x32 image by default.
    """
    from collections import OrderedDict

    from torch import nn
    from torchvision.models.resnet import BasicBlock, conv1x1

    class NPRResidual(nn.Module):
        """The NPR map of the (normalised) input image."""

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return npr_residual(images)

    def stage(channels_in: int, channels_out: int, count: int, stride: int) -> nn.Sequential:
        shortcut = None if stride == 1 and channels_in == channels_out else nn.Sequential(
            conv1x1(channels_in, channels_out, stride), nn.BatchNorm2d(channels_out))
        return nn.Sequential(BasicBlock(channels_in, channels_out, stride, shortcut),
                             *(BasicBlock(channels_out, channels_out) for _ in range(count - 1)))

    if len(widths) != 2 or len(blocks) != 2 or min(blocks) < 1:
        raise ValueError(f"npr takes two stages: widths and blocks of length 2 with at least one block each, "
                         f"got widths={tuple(widths)}, blocks={tuple(blocks)}")
    first, second = (int(w) for w in widths)
    return nn.Sequential(OrderedDict(
        npr=NPRResidual(),
        stem=nn.Sequential(nn.Conv2d(3, first, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(first),
                           nn.ReLU(inplace=True)),
        layer1=stage(first, first, int(blocks[0]), 1),
        layer2=stage(first, second, int(blocks[1]), 2),
        pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
        fc=nn.Linear(second, num_classes),
    ))
