"""FreqNet-style frequency-aware detector (Tan et al., AAAI 2024, "Frequency-Aware Deepfake Detection: Improving
Generalizability through Frequency Space Learning", arXiv:2403.07240).

FreqNet keeps a CNN on the high frequencies, where generators' artifacts sit: before each of its frequency blocks
the image or feature map loses its low spatial frequencies (FFT, the centre of the shifted spectrum zeroed,
inverse FFT), a 1x1 convolution follows, the features lose their low frequencies along the channel axis too,
and a frequency convolution layer convolves the features' spectrum before transforming back (the paper speaks of
amplitude and phase; its published code, and this module, convolve the real and imaginary parts). Residual
stages sit between the blocks.

What differs here: the paper's network works on 224x224 crops, with four frequency blocks at 64 and 256 channels
around the first two ResNet-50 stages, trained on ProGAN images. Here the input is CIFAKE's 32x32, so three
frequency blocks (16 channels at 32 pixels, 32 at 16, 64 at 8) alternate with two single-BasicBlock stages,
trained from scratch on CIFAKE, with no pretrained weights. The transforms are real FFTs (about 1.6x faster
on CPU): the low-frequency mask is applied to the unshifted half spectrum and made symmetric (the paper's centre
square after ``fftshift`` also zeroes one more row and column on the negative side, which its real part then
halves), and the 1x1 frequency convolutions act on each frequency alone, so they need no shift either. Every FFT
runs in float32 (also under bf16 autocast).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    import torch
    from torch import nn

SCALE = 4  # the paper's: frequencies within n/SCALE of zero, along every axis filtered, are removed


def high_pass(x: torch.Tensor, dims: Sequence[int], scale: int = SCALE) -> torch.Tensor:
    """``x`` without its low frequencies along ``dims``, in float32: the real FFT over ``dims`` is zeroed where every
    frequency index k (cycles per length n) has ``|k| < n / scale`` (FreqNet's central square, or band, of the
    ``fftshift``-ed spectrum, made symmetric so that the result stays real), then transformed back."""
    import torch

    dims = tuple(d % x.ndim for d in dims)
    spectrum = torch.fft.rfftn(x.float(), dim=dims, norm="ortho")
    low = torch.ones((), dtype=torch.bool, device=x.device)
    for dim in dims:
        n = x.shape[dim]
        k = (torch.fft.rfftfreq if dim == dims[-1] else torch.fft.fftfreq)(n, 1 / n, device=x.device)
        shape = [1] * x.ndim
        shape[dim] = len(k)
        low = low & (k.abs() < n / scale).view(shape)
    return torch.fft.irfftn(spectrum.masked_fill(low, 0), s=[x.shape[d] for d in dims], dim=dims, norm="ortho")


def frequency_conv(x: torch.Tensor, real: nn.Module, imaginary: nn.Module) -> torch.Tensor:
    """FreqNet's frequency convolution layer: ``real`` and ``imaginary`` (1x1 convolutions) applied to the two
    parts of the spatial spectrum of ``x``, then the inverse FFT, in float32."""
    import torch

    size = x.shape[-2:]
    spectrum = torch.fft.rfft2(x.float(), norm="ortho")
    spectrum = torch.complex(real(spectrum.real).float(), imaginary(spectrum.imag).float())
    return torch.fft.irfft2(spectrum, s=size, norm="ortho")


@register_detector("freqnet", recipe=Recipe(epochs=10, batch_size=128, lr=2e-3, augment=("flip",)),
                   cam_layer="layer2")
def freqnet(widths: Sequence[int] = (16, 32, 64), num_classes: int = 1) -> nn.Module:
    """FreqNet-style CNN (Tan et al. 2024): high-pass filtered images and features, convolutions in frequency space.

    A frequency block (spatial high-pass, 1x1 conv, channel high-pass, frequency convolution) at 32 pixels, then
    twice a strided frequency block and a BasicBlock (at 16 and at 8 pixels), global average pooling and a linear
    layer: about 11M multiply-adds and 18 small FFTs per 32x32 image.
    """
    from collections import OrderedDict

    import torch.nn.functional as F
    from torch import nn
    from torchvision.models.resnet import BasicBlock

    class FrequencyBlock(nn.Module):
        """High-pass over space, a 1x1 convolution (strided), high-pass over channels, frequency convolution."""

        def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False)
            self.norm = nn.BatchNorm2d(channels_out)
            self.real = nn.Conv2d(channels_out, channels_out, 1, bias=False)
            self.imaginary = nn.Conv2d(channels_out, channels_out, 1, bias=False)
            self.frequency_norm = nn.BatchNorm2d(channels_out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.norm(self.conv(F.relu(high_pass(x, (-2, -1))))))
            x = F.relu(high_pass(x, (1,)))
            return F.relu(self.frequency_norm(frequency_conv(x, self.real, self.imaginary)))

    if len(widths) != 3:
        raise ValueError(f"freqnet takes three widths (channels at 32, 16 and 8 pixels), got {tuple(widths)}")
    first, second, third = (int(w) for w in widths)
    return nn.Sequential(OrderedDict(
        freq1=FrequencyBlock(3, first, 1),
        freq2=FrequencyBlock(first, second, 2),
        layer1=BasicBlock(second, second),
        freq3=FrequencyBlock(second, third, 2),
        layer2=BasicBlock(third, third),
        pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
        fc=nn.Linear(third, num_classes),
    ))
