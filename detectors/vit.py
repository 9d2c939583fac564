"""Vision Transformer (Dosovitskiy et al. 2021) from timm."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.detector import freeze_all_but, register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from torch import nn


@register_detector(
    "vit-tiny", recipe=Recipe(epochs=10, batch_size=128, lr=1e-3, weight_decay=0.05, augment=("flip",)),
    cam_layer="patch_embed.proj",
)
def vit_tiny(patch_size: int = 4, freeze_backbone: bool = False, num_classes: int = 1) -> nn.Module:
    """timm ViT-Tiny built for 32x32 input with 4x4 patches (64 tokens).

    The ImageNet configuration (16x16 patches at 224x224) would give 4 tokens at 32x32; re-patching keeps
    the token count close to the original design without upsampling. ``freeze_backbone`` trains only the
    head and the re-sized patch and position embeddings, for transfer learning from ``pretrained`` weights.
    """
    import timm

    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=num_classes, img_size=32, patch_size=patch_size
    )
    if freeze_backbone:
        freeze_all_but(model, model.get_classifier(), model.patch_embed, model.pos_embed)
    return model
