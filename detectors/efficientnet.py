"""EfficientNet-B0 (Tan & Le 2019) from timm."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.detector import freeze_all_but, register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector(
    "efficientnet-b0", recipe=Recipe(epochs=10, batch_size=128, lr=2e-3, augment=("flip",)),
    cam_layer="blocks.4",
)
def efficientnet_b0(freeze_backbone: bool = False, num_classes: int = 1) -> nn.Module:
    """timm EfficientNet-B0 with a stride-1 stem for 32x32 input.

    The ImageNet network downsamples by 32, leaving a single pixel at 32x32; a stride-1 stem keeps a 2x2
    final map (total stride 16) at a fraction of the cost of upsampling the input to 224x224.
    ``freeze_backbone`` trains only the classifier, for transfer learning from ``pretrained`` weights.
    """
    import timm

    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=num_classes)
    model.conv_stem.stride = (1, 1)
    if freeze_backbone:
        freeze_all_but(model, model.get_classifier())
    return model
