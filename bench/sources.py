"""Sources: named, immutable sets of images with one label, stored once as uint8 (N, 3, H, W) arrays.

Layout under the data directory::

    sources/<name>/images.npy      the pixels, uint8 (N, 3, H, W)
    sources/<name>/manifest.json   count, split, label, sha256 of the pixels, origin, encoding
    sources/<name>/files.txt       where each image came from, one line per image

A source directory is written under a temporary name and renamed into place, so a reader sees either a
complete source or none. Every load re-hashes the pixels against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

Label = Literal["real", "fake"]
LABELS: tuple[Label, ...] = ("real", "fake")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]*$")


class SourceError(Exception):
    """A source is missing, malformed or corrupt; the message says what to do."""


def content_hash(images: np.ndarray) -> str:
    """sha256 of an image array's shape, dtype and bytes."""
    digest = hashlib.sha256(f"{images.dtype.str}{tuple(images.shape)}".encode())
    digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What a source is and where it came from."""

    name: str
    label: Label
    split: str
    count: int
    shape: tuple[int, int, int]
    sha256: str
    origin: dict
    encoding: dict
    skipped: dict = field(default_factory=dict)
    created: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["shape"] = tuple(data["shape"])
        return cls(**data)


@dataclass(frozen=True)
class Source:
    """A loaded source: its manifest and its pixels."""

    manifest: Manifest
    images: np.ndarray
    files: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def label(self) -> Label:
        return self.manifest.label


def validate_images(images: np.ndarray, what: str) -> None:
    """Raise unless ``images`` is a uint8 (N, 3, H, W) array with N >= 1."""
    if images.dtype != np.uint8:
        raise SourceError(f"{what}: images must be uint8 in [0, 255], got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise SourceError(f"{what}: images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise SourceError(f"{what}: no images")


class SourceStore:
    """The sources cached under ``<data_dir>/sources``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "sources"

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return (self.path(name) / "manifest.json").is_file()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").is_file())

    def manifest(self, name: str) -> Manifest:
        path = self.path(name) / "manifest.json"
        if not path.is_file():
            raise SourceError(
                f"source {name!r} is not in {self.root}. Import it with `bench data import`, "
                f"or run a suite that declares it. Cached: {', '.join(self.names()) or 'none'}"
            )
        return Manifest.from_json(path.read_text())

    def load(self, name: str) -> Source:
        """Load a source and check its pixels against the manifest's sha256."""
        manifest = self.manifest(name)
        images = np.load(self.path(name) / "images.npy", mmap_mode="r")
        if content_hash(images) != manifest.sha256:
            raise SourceError(
                f"source {name!r} is corrupt: its pixels no longer match the sha256 in its manifest. "
                f"Delete {self.path(name)} and import it again."
            )
        files = tuple((self.path(name) / "files.txt").read_text().splitlines())
        return Source(manifest, images, files)

    def save(
        self,
        name: str,
        images: np.ndarray,
        label: Label,
        split: str,
        origin: dict,
        encoding: dict,
        files: list[str],
        skipped: dict | None = None,
    ) -> Manifest:
        """Store a new source atomically and return its manifest. Replaces a source of the same name."""
        if not NAME_PATTERN.match(name):
            raise SourceError(
                f"source name {name!r} is not allowed: use lower-case letters, digits, '.', '_', '-', '@'"
            )
        if label not in LABELS:
            raise SourceError(f"source {name!r}: label must be one of {LABELS}, got {label!r}")
        validate_images(images, f"source {name!r}")
        if len(files) != len(images):
            raise SourceError(f"source {name!r}: {len(files)} file names for {len(images)} images")
        manifest = Manifest(
            name=name,
            label=label,
            split=split,
            count=int(images.shape[0]),
            shape=tuple(int(s) for s in images.shape[1:]),
            sha256=content_hash(images),
            origin=origin,
            encoding=encoding,
            skipped=skipped or {},
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        try:
            np.save(tmp / "images.npy", np.ascontiguousarray(images))
            (tmp / "files.txt").write_text("".join(f"{f}\n" for f in files))
            (tmp / "manifest.json").write_text(manifest.to_json())
            final = self.path(name)
            if final.exists():
                old = self.root / f".{name}.old.{os.getpid()}"
                final.rename(old)
                tmp.rename(final)
                shutil.rmtree(old)
            else:
                try:
                    tmp.rename(final)
                except OSError:
                    if not self.exists(name):
                        raise
                    shutil.rmtree(tmp)  # a concurrent import of the same name finished first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return manifest
