"""Pictures of sources: a grid of images, enlarged so that a person can look at them."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from bench.files import write_atomic


def image_grid(images: np.ndarray, scale: int = 4, gap: int = 2) -> Image.Image:
    """uint8 (N, 3, H, W) images in a near-square grid, each enlarged ``scale`` times (nearest neighbour)."""
    count, _, height, width = images.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    cell_h, cell_w = height * scale + gap, width * scale + gap
    canvas = np.full((rows * cell_h + gap, columns * cell_w + gap, 3), 255, np.uint8)
    enlarged = np.asarray(images).transpose(0, 2, 3, 1).repeat(scale, axis=1).repeat(scale, axis=2)
    for i, image in enumerate(enlarged):
        top, left = gap + (i // columns) * cell_h, gap + (i % columns) * cell_w
        canvas[top : top + height * scale, left : left + width * scale] = image
    return Image.fromarray(canvas)


def save_grid(images: np.ndarray, path: Path, scale: int = 4) -> None:
    """Write :func:`image_grid` of ``images`` to ``path`` as a PNG (atomically)."""
    buffer = io.BytesIO()
    image_grid(images, scale).save(buffer, "PNG")
    write_atomic(Path(path), buffer.getvalue())
