"""The azimuthally averaged spectrum into logistic regression (Durall et al., CVPR 2020, "Watch your Up-Convolution:
CNN Based Generative Deep Neural Networks are Failing to Reproduce Spectral Distributions", arXiv:2003.01826).

Up-convolutions make generators miss the high-frequency decay of real images. The paper reduces each image to a
1-D power spectrum: the log magnitude of the 2-D Fourier transform of the grey image, averaged over rings of equal
frequency (azimuthal average), and separates real from fake with logistic regression on it.

What differs here: the paper uses high-resolution faces; here the input is CIFAKE's 32x32, trained from scratch
on CIFAKE, so the spectrum has 17 rings, from 0 to the Nyquist frequency (the rings of ``bench show --spectrum``,
:func:`bench.spectrum.radial_profile`, which stop at Nyquist where the paper's go on into the corners). The
features are standardised before scikit-learn's logistic regression (lbfgs rather than liblinear), and
``color=True`` takes the spectrum of each RGB channel instead of the grey (BT.601) image.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    import numpy as np
    import torch

    from bench.estimator import WithFeatures

EPS = 1e-6  # inside the log, as in bench.spectrum.mean_log_spectrum


@functools.cache
def ring_average(height: int, width: int) -> np.ndarray:
    """(H*W, rings) matrix M: ``spectra.reshape(N, -1) @ M`` is :func:`bench.spectrum.radial_profile` of each
    centred (H, W) spectrum. The profile is linear, so M's rows are the profiles of the unit spectra."""
    import numpy as np

    from bench.spectrum import radial_profile

    units = np.eye(height * width).reshape(-1, height, width)
    return np.stack([radial_profile(unit)[1] for unit in units])


def spectrum_features(images: torch.Tensor, color: bool = False) -> np.ndarray:
    """(N, rings) azimuthal averages of log(|F| + eps), F the centred 2-D Fourier transform of each grey image in
    [0, 1] (float (N, 3, H, W) input); with ``color``, (N, 3 * rings), one profile per channel."""
    import torch

    from bench.spectrum import LUMA

    planes = images if color else torch.einsum("nchw,c->nhw", images, torch.from_numpy(LUMA)).unsqueeze(1)
    spectra = torch.fft.fftshift(torch.fft.fft2(planes.double()), dim=(-2, -1))
    logs = torch.log(spectra.abs() + EPS).flatten(2).numpy()  # (N, planes, H*W)
    return (logs @ ring_average(*images.shape[-2:])).reshape(len(images), -1)


@register_detector("spectrum-lr", recipe=Recipe(epochs=1, augment=()), differentiable=False)
def spectrum_lr(color: bool = False, C: float = 1.0, max_iter: int = 1000) -> WithFeatures:
    """Durall et al. (2020): logistic regression on the azimuthally averaged log spectrum of the grey image.

    scikit-learn's StandardScaler and LogisticRegression (L2, inverse strength ``C``); ``color`` takes one
    spectrum per RGB channel. Stored as arrays.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bench.estimator import WithFeatures

    return WithFeatures(make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter)),
                        functools.partial(spectrum_features, color=color))
