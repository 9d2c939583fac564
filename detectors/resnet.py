"""ResNet-50 (He et al. 2016) from timm."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from bench.detector import freeze_all_but, register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector("resnet50", recipe=Recipe(epochs=10, batch_size=128, lr=1e-3, augment=("flip",)), cam_layer="layer2")
def resnet50(
    stem: Literal["imagenet", "cifar"] = "imagenet", freeze_backbone: bool = False, num_classes: int = 1
) -> nn.Module:
    """timm ResNet-50, unchanged by default; ``stem="cifar"`` adapts it to 32x32 input.

    With the ImageNet stem (7x7 stride-2 conv and max pool) a 32x32 image reaches the four stages at 8, 4,
    2 and 1 pixels. The CIFAR stem (He et al. 2016, sec. 4.2: 3x3 stride-1 conv, no max pool) keeps 32, 16,
    8 and 4 pixels and usually scores higher, but costs ~16x the compute (about 11 vs 280 training
    images/s on 2 CPU cores), so it is opt-in per suite. ``freeze_backbone`` trains only the classifier
    (and the CIFAR stem), for transfer learning from ``pretrained`` weights.
    """
    import timm
    from torch import nn

    model = timm.create_model("resnet50", pretrained=False, num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    if freeze_backbone:
        freeze_all_but(model, model.get_classifier(), *([model.conv1] if stem == "cifar" else []))
    return model
