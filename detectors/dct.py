"""DCT-domain detectors (Frank et al., ICML 2020, "Leveraging Frequency Analysis for Deep Fake Image Recognition",
arXiv:2003.08685).

Up-sampling in generators leaves grid-like artifacts that the 2-D discrete cosine transform (type II, orthonormal)
shows plainly. The paper classifies the log-scaled DCT coefficients, log(|DCT| + eps), computed per colour channel
and standardised coefficient by coefficient with the training set's mean and variance, by a small CNN and by
linear (logistic) regression. A horizontal flip only changes the signs of coefficients, so the features ignore
it: neither detector augments.

What differs here: the paper works on 128x128 GAN images (faces, LSUN bedrooms); here the input is CIFAKE's 32x32,
trained from scratch on CIFAKE. The DCT is taken of pixels in [0, 1] rather than [0, 255] (a constant shift of
the log, which standardisation removes) with ``EPS`` = 1e-5 (the paper's 1e-12 would only reach below the
float32 rounding of the transform). ``dct-cnn`` standardises with a batch norm over the coefficients, without
affine part, that keeps the cumulative mean and variance of all training batches (while training it uses each
batch's own, as batch norm does), so the trained network computes the whole pipeline, differentiably: the DCT is
two products with a fixed matrix, in float32 also under bf16 autocast. The paper's Adam at 1e-3 becomes the
one-cycle AdamW recipe at 3e-3, and the linear model's L2 strength C = 0.01; both were chosen on validation data
carved from CIFAKE's training split.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from bench.estimator import WithFeatures

EPS = 1e-5  # inside the log: below the DCT noise of 8-bit pixels (about 1/255/sqrt(12) per coefficient)
SIZE = 32  # input side


@functools.cache
def dct_basis(size: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (size x size): ``D @ x`` is ``scipy.fft.dct(x, norm="ortho")`` along the
    first axis, so ``D @ image @ D.T`` is the 2-D DCT of each channel."""
    import numpy as np
    import torch
    from scipy.fft import dct

    return torch.from_numpy(dct(np.eye(size), type=2, norm="ortho", axis=0)).float()


def log_dct(images: torch.Tensor, basis: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """log(|DCT| + eps) of each channel of (B, C, S, S) images, with ``basis`` from :func:`dct_basis`, in float32."""
    import torch

    with torch.autocast(images.device.type, enabled=False):
        coefficients = basis @ images.float() @ basis.T
        return torch.log(coefficients.abs() + eps)


def log_dct_features(images: torch.Tensor) -> np.ndarray:
    """(N, 3*S*S) log-DCT features of float (N, 3, S, S) images in [0, 1], for :class:`WithFeatures`."""
    return log_dct(images, dct_basis(images.shape[-1])).reshape(len(images), -1).numpy()


@register_detector("dct-cnn", recipe=Recipe(epochs=10, batch_size=128, lr=3e-3, augment=()), input_size=SIZE,
                   mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # no normalisation: the DCT takes pixels in [0, 1]
def dct_cnn(num_classes: int = 1) -> nn.Module:
    """Frank et al. (2020)'s simple CNN on standardised log-DCT coefficients of each colour channel.

    Convolutions of 3, 8, 16 and 32 channels (3x3, same padding, ReLU) with 2x2 average pooling after the second
    and third, flattened into a linear layer.
    """
    from collections import OrderedDict

    from torch import nn

    class LogDCT(nn.Module):
        """log(|DCT| + eps) per channel, by a fixed matrix (a buffer, not a weight)."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("basis", dct_basis(SIZE).clone(), persistent=False)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return log_dct(images, self.basis)

    def conv(channels_in: int, channels_out: int) -> list[nn.Module]:
        return [nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.ReLU(inplace=True)]

    return nn.Sequential(OrderedDict(
        dct=LogDCT(),
        standardise=nn.Sequential(nn.Flatten(), nn.BatchNorm1d(3 * SIZE * SIZE, affine=False, momentum=None),
                                  nn.Unflatten(1, (3, SIZE, SIZE))),
        features=nn.Sequential(*conv(3, 3), *conv(3, 8), nn.AvgPool2d(2), *conv(8, 16), nn.AvgPool2d(2),
                               *conv(16, 32)),
        flatten=nn.Flatten(),
        fc=nn.Linear(32 * (SIZE // 4) ** 2, num_classes),
    ))


@register_detector("dct-linear", recipe=Recipe(epochs=1, augment=()), differentiable=False)
def dct_linear(C: float = 0.01, max_iter: int = 1000) -> WithFeatures:
    """Frank et al. (2020)'s linear model: logistic regression on standardised log-DCT coefficients.

    scikit-learn's StandardScaler and LogisticRegression (L2, inverse strength ``C``, lbfgs); stored as arrays.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bench.estimator import WithFeatures

    return WithFeatures(make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter)), log_dct_features)
