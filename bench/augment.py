"""Batch augmentations: whole (B, 3, H, W) batches on the training device, no per-image Python.

Each augmentation takes the images in [0, 1], the training generator (so a seed fixes every draw) and the recipe
settings its parameters name (``max_shift`` and those of :data:`bench.recipe.SETTINGS`).
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Augment = Callable[..., torch.Tensor]


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


def blur(images: torch.Tensor, generator: torch.Generator, blur_probability: float, blur_sigma: float) -> torch.Tensor:
    """Gaussian blur of each image with probability ``blur_probability``, its sigma drawn from U[0, blur_sigma].

    CNNSpot's training blur (Wang et al. 2020). One separable kernel per image (radius 3 x ``blur_sigma``, at most
    the image side less one), applied as grouped convolutions with reflected borders.
    """
    b, c, h, w = images.shape
    chosen = torch.rand(b, generator=generator, device=images.device) < blur_probability
    sigma = torch.rand(b, generator=generator, device=images.device) * blur_sigma
    if not chosen.any():
        return images
    radius = min(math.ceil(3 * blur_sigma), h - 1, w - 1)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernels = torch.exp(-0.5 * (offsets / sigma[chosen, None].clamp_min(1e-6)) ** 2)  # sigma 0: the identity
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat_interleave(c, 0)  # one per image and channel
    picked = images[chosen]
    groups = picked.shape[0] * c
    x = F.pad(picked.reshape(1, groups, h, w), (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernels.view(groups, 1, 1, -1), groups=groups)
    x = F.conv2d(x, kernels.view(groups, 1, -1, 1), groups=groups)
    out = images.clone()
    out[chosen] = x.view_as(picked).clamp(0, 1)  # the kernel's weights sum to 1 up to rounding
    return out


def jpeg(images: torch.Tensor, generator: torch.Generator, jpeg_probability: float,
         jpeg_quality: tuple[int, int]) -> torch.Tensor:
    """JPEG re-encoding of each image with probability ``jpeg_probability``, its quality drawn from ``jpeg_quality``
    (both ends included).

    CNNSpot's training JPEG (Wang et al. 2020). torchvision's libjpeg (CPU; nvjpeg on a CUDA device) encodes and
    decodes each quality's images as one list; pixels are rounded to 8 bits first.
    """
    from torchvision.io import decode_jpeg, encode_jpeg

    chosen = torch.rand(images.shape[0], generator=generator, device=images.device) < jpeg_probability
    quality = torch.randint(jpeg_quality[0], jpeg_quality[1] + 1, (images.shape[0],), generator=generator,
                            device=images.device)
    rows = chosen.nonzero()[:, 0]
    if len(rows) == 0:
        return images
    pixels = (images[rows].clamp(0, 1) * 255).round().to(torch.uint8).contiguous()  # also from channels_last
    quality = quality[rows]
    with warnings.catch_warnings():  # deprecated since torchvision 0.29 (pinned); its successor is torchcodec
        warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision",
                                DeprecationWarning)
        for level in quality.unique().tolist():
            group = (quality == level).nonzero()[:, 0]
            encoded = [data.cpu() for data in encode_jpeg(list(pixels[group]), quality=level)]
            pixels[group] = torch.stack(decode_jpeg(encoded, device=images.device))
    out = images.clone()
    out[rows] = pixels.to(images.dtype) / 255
    return out


AUGMENTATIONS: dict[str, Augment] = {"flip": flip, "rot90": rot90, "shift": shift, "blur": blur, "jpeg": jpeg}


@functools.cache
def _settings(augmentation: Augment) -> tuple[str, ...]:
    """The names of the settings an augmentation takes (its parameters after images and generator)."""
    return tuple(inspect.signature(augmentation).parameters)[2:]


def augment(
    images: torch.Tensor, names: Sequence[str], generator: torch.Generator, max_shift: int, **settings: object
) -> torch.Tensor:
    """Apply the named augmentations in order, each with the settings it names: ``max_shift`` and ``settings``
    (the recipe's :attr:`~bench.recipe.Recipe.augment_settings`)."""
    given = {"max_shift": max_shift, **settings}
    for name in names:
        function = AUGMENTATIONS[name]
        images = function(images, generator, **{key: given[key] for key in _settings(function) if key in given})
    return images
