"""ResNet-50 (He et al. 2016) from timm."""

from typing import Literal

import timm
from torch import nn

from bench.detector import register_detector
from bench.recipe import Recipe


@register_detector("resnet50", recipe=Recipe(epochs=10, batch_size=128, lr=1e-3, augment=("flip",)))
def resnet50(stem: Literal["cifar", "imagenet"] = "cifar") -> nn.Module:
    """timm ResNet-50 with a CIFAR stem (3x3 stride-1 conv, no max pool) for 32x32 input.

    With the CIFAR stem (He et al. 2016, sec. 4.2) the four stages see 32, 16, 8 and 4 pixels; the
    ImageNet stem (``stem="imagenet"``) divides the input by 4 first, so the last stage is 1x1, but costs
    ~16x less compute, which matters on a CPU.
    """
    model = timm.create_model("resnet50", pretrained=False, num_classes=1)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model
