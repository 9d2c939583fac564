"""CNNSpot (Wang et al., CVPR 2020, "CNN-generated images are surprisingly easy to spot... for now",
arXiv:1912.11035).

A plain ResNet-50 generalises across generators when its training images are degraded: each is blurred
(Gaussian, sigma ~ U[0, 3]) and JPEG re-encoded (quality ~ U{30, ..., 100}), each with probability 0.5 (the
paper's "Blur+JPEG (0.5)"; its "Blur+JPEG (0.1)" variant is ``blur_probability`` and ``jpeg_probability`` 0.1
in the recipe). Here those are the recipe's ``blur`` and ``jpeg`` augmentations, open to every detector.

What differs here: the paper fine-tunes ImageNet weights on 224x224 crops of 256x256 ProGAN images (Adam, lr
1e-4, batch 64, the rate divided by ten on plateaus). Here the network is the project's ``resnet50`` with the
same default, the unchanged ImageNet architecture (on 32x32 input its four stages see 8, 4, 2 and 1 pixels),
trained from scratch on CIFAKE with the one-cycle AdamW recipe of ``resnet50``. The blur and JPEG settings are
the paper's, although a sigma of 3 pixels removes far more of a 32x32 image than of a 256x256 one.
``stem="cifar"`` keeps full resolution through the stem (16 times the compute: about 4 training images/s on
a 2-core CPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from bench.detector import register_detector
from bench.detectors.resnet import resnet50
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector("cnnspot", recipe=Recipe(epochs=10, batch_size=128, lr=1e-3, augment=("blur", "jpeg", "flip")),
                   cam_layer="layer2")
def cnnspot(stem: Literal["imagenet", "cifar"] = "imagenet", freeze_backbone: bool = False,
            num_classes: int = 1) -> nn.Module:
    """CNNSpot (Wang et al. 2020): ResNet-50 trained with random blur and JPEG (each with probability 0.5).

    The ResNet-50 of ``resnet50``, with the same defaults; ``pretrained: timm:resnet50...`` weights load as for
    ``resnet50``.
    """
    return resnet50(stem=stem, freeze_backbone=freeze_backbone, num_classes=num_classes)
