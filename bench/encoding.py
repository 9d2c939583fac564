"""Encoding control: every image a detector sees goes through the same file format, real and fake alike.

Detectors readily learn the file format instead of the generator (JPEG reals against PNG fakes). CIFAKE and
ddpm-cifar10 are Pillow JPEG files at quality 75; generated sources are stored lossless. A suite's
``encoding`` (default: Pillow JPEG quality 75) is applied to every source it uses, for training and for
testing: a source whose files all carry that encoding already is used as stored, any other source (lossless,
another quality, an array) is JPEG-encoded and decoded once.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field


class Encoding(BaseModel):
    """How images are encoded before a detector sees them: ``jpeg`` at ``quality``, or ``none`` (as stored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["jpeg", "none"] = "jpeg"
    quality: int = Field(75, ge=1, le=95, description="Pillow JPEG quality (Pillow's default is 75)")

    def describe(self) -> str:
        """The encoding as the importers name a file's, e.g. ``JPEG q75 4:2:0``."""
        if self.format == "none":
            return "as stored"
        return f"JPEG q{self.quality} 4:2:0"  # Pillow's default chroma subsampling

    def already_applied(self, source_encoding: dict) -> bool:
        """Whether every file of a source (its manifest's ``encoding``) already has this encoding."""
        files = source_encoding.get("files", {})
        return self.format == "none" or (bool(files) and set(files) == {self.describe()})


def jpeg_roundtrip(images: np.ndarray, quality: int) -> np.ndarray:
    """Encode each uint8 (N, 3, H, W) image as a Pillow JPEG at ``quality`` and decode it again."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buffer, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1)
    return out


def apply_encoding(images: np.ndarray, source_encoding: dict, encoding: Encoding) -> tuple[np.ndarray, str]:
    """The images as a detector sees them under ``encoding``, and what was done (for the record)."""
    if encoding.format == "none":
        return images, "as stored"
    if encoding.already_applied(source_encoding):
        return images, f"as stored (already {encoding.describe()})"
    return jpeg_roundtrip(np.asarray(images), encoding.quality), f"re-encoded as {encoding.describe()}"
