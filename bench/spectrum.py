"""A forensic view of sources: mean Fourier spectra, their radial profiles, and source cards.

Generators leave traces in the frequency domain (upsampling replicas, missing or excess high-frequency
energy) that images do not show to the eye. The mean log-magnitude spectrum of a source and its azimuthal
average make them visible and comparable across sources.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from bench.preview import image_grid

if TYPE_CHECKING:
    from matplotlib.axes import Axes

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 weights of R, G, B in grey
GRID_IMAGES = 64  # images in a source card's sample grid


def mean_log_spectrum(images: np.ndarray, eps: float = 1e-6, batch: int = 2048) -> np.ndarray:
    """Mean over uint8 (N, 3, H, W) images of log(|F| + eps), F the centred 2-D Fourier transform of the grey
    image in [0, 1]; (H, W), zero frequency at (H // 2, W // 2)."""
    total = np.zeros(images.shape[-2:], np.float64)
    for start in range(0, len(images), batch):
        grey = np.einsum("nchw,c->nhw", images[start : start + batch].astype(np.float32) / 255, LUMA)
        spectra = np.fft.fftshift(np.fft.fft2(grey), axes=(-2, -1))
        total += np.log(np.abs(spectra) + eps).sum(axis=0)
    return (total / len(images)).astype(np.float32)


def radial_profile(spectrum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal average of a centred spectrum: (frequencies in cycles per pixel, mean value per ring).

    Rings are one frequency step wide and reach the Nyquist frequency (0.5) of the shorter side.
    """
    height, width = spectrum.shape
    size = min(height, width)
    y, x = np.indices(spectrum.shape)
    radius = np.hypot((y - height // 2) * size / height, (x - width // 2) * size / width).round().astype(int)
    inside = radius <= size // 2
    sums = np.bincount(radius[inside], weights=spectrum[inside])
    counts = np.bincount(radius[inside])
    return np.arange(len(sums)) / size, sums / counts


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _draw_spectra(figure: Figure, axes_row: list[Axes], profile_axes: Axes, spectra: Mapping[str, np.ndarray]) -> None:
    """Spectra side by side on one colour scale, and their radial profiles in one plot."""
    values = np.concatenate([s.ravel() for s in spectra.values()])
    low, high = np.percentile(values, [1, 99.9])
    for axes, (name, spectrum) in zip(axes_row, spectra.items(), strict=True):
        height, width = spectrum.shape  # pixel k shows frequency (k - size // 2) / size
        extent = (-0.5 - 0.5 / width, 0.5 - 0.5 / width, 0.5 - 0.5 / height, -0.5 - 0.5 / height)
        shown = axes.imshow(spectrum, cmap="inferno", vmin=low, vmax=high, extent=extent)
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("cycles/pixel", fontsize=8)
        axes.tick_params(labelsize=7)
    figure.colorbar(shown, ax=list(axes_row), shrink=0.8, label="mean log |F|")
    for name, spectrum in spectra.items():
        profile_axes.plot(*radial_profile(spectrum), label=name)
    profile_axes.set(xlabel="spatial frequency (cycles/pixel)", ylabel="mean log |F| (azimuthal average)")
    profile_axes.grid(alpha=0.3)
    profile_axes.legend(fontsize=8)


def spectrum_figure(spectra: Mapping[str, np.ndarray]) -> bytes:
    """PNG: the mean spectra of several sources in a row (one colour scale), and all radial profiles below."""
    columns = len(spectra)
    figure = Figure(figsize=(max(3.2 * columns, 6.5), 6.5), layout="constrained")
    grid = figure.add_gridspec(2, columns, height_ratios=(1, 1))
    _draw_spectra(figure, [figure.add_subplot(grid[0, i]) for i in range(columns)],
                  figure.add_subplot(grid[1, :]), spectra)
    return _png(figure)


def source_card_files(sources: dict[str, np.ndarray], reference: str,
                      names: Iterable[str] | None = None) -> dict[str, bytes]:
    """PNG cards by path (``figures/source-NAME.png``) for each source of uint8 (N, 3, H, W) images (or for those
    in ``names``; ``sources`` must hold ``reference`` too).

    A card shows the first images as a grid, the source's mean spectrum beside that of ``reference`` (the
    real test images), and both radial profiles; the reference's own card shows it alone.
    """
    drawn = list(sources) if names is None else list(names)
    spectra = {name: mean_log_spectrum(sources[name]) for name in {*drawn, reference}}
    cards = {}
    for name in drawn:
        images = sources[name]
        shown = {name: spectra[name]} if name == reference else {name: spectra[name], reference: spectra[reference]}
        figure = Figure(figsize=(3.2 * (len(shown) + 2), 3.4), layout="constrained")
        grid = figure.add_gridspec(1, len(shown) + 2)
        sample = figure.add_subplot(grid[0, 0])
        sample.imshow(image_grid(images[:GRID_IMAGES], scale=2, gap=2), interpolation="nearest")
        sample.set_title(f"{name}: first {min(len(images), GRID_IMAGES)}", fontsize=9)
        sample.axis("off")
        _draw_spectra(figure, [figure.add_subplot(grid[0, i + 1]) for i in range(len(shown))],
                      figure.add_subplot(grid[0, -1]), shown)
        cards[card_path(name)] = _png(figure)
    return cards


def card_path(name: str) -> str:
    """Where a source's card lies, relative to the leaderboard folder."""
    return f"figures/source-{name}.png"
