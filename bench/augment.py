"""Batch augmentations: whole (B, 3, H, W) batches on the training device, no per-image Python."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Augment = Callable[[torch.Tensor, torch.Generator, int], torch.Tensor]


def flip(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    mask = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(3), images)


def rot90(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Rotate each image by a random multiple of 90 degrees (square images only)."""
    turns = torch.randint(0, 4, (images.shape[0],), generator=generator, device=images.device)
    out = images.clone()
    for k in (1, 2, 3):
        chosen = turns == k
        out[chosen] = torch.rot90(images[chosen], k, dims=(2, 3))
    return out


def shift(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels in x and y, filling with reflected borders."""
    if max_shift == 0:
        return images
    b, c, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="reflect")
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=generator, device=images.device)
    rows = (torch.arange(h, device=images.device) + dy)[:, None, :, None]
    cols = (torch.arange(w, device=images.device) + dx)[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


AUGMENTATIONS: dict[str, Augment] = {"flip": flip, "rot90": rot90, "shift": shift}


def augment(
    images: torch.Tensor, names: Sequence[str], generator: torch.Generator, max_shift: int
) -> torch.Tensor:
    """Apply the named augmentations in order."""
    for name in names:
        images = AUGMENTATIONS[name](images, generator, max_shift)
    return images
