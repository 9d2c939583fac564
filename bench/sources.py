"""Sources: named, immutable sets of images with one label, stored once as uint8 (N, 3, H, W) arrays.

Layout under the data directory::

    sources/<name>/images.npy      the pixels, uint8 (N, 3, H, W)
    sources/<name>/manifest.json   count, split, label, sha256 of the pixels, origin, encoding, and counts of
                                   the input files skipped and of the changes made on import, by reason
    sources/<name>/files.json      where each image came from: a JSON list, one name per image
                                   (sources stored before it have files.txt, one name per line, still read)
    sources/_previous/<name>/      the copy that the last import of <name> replaced (one per name), so that
                                   suites giving one name different inputs do not re-import it by turns

A source directory is written under a temporary name and renamed into place, so a reader sees either a
complete source or none; temporary directories of killed imports are deleted when the store is opened. Every
load re-hashes the pixels against the manifest. A damaged source (a file missing, truncated or unreadable, or
pixels that no longer match the manifest) is set aside as ``sources/.<name>.corrupt`` and then counts as absent,
so the next import of it (the runner imports every absent source) heals the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from bench.files import remove_abandoned, temp_suffix

log = logging.getLogger(__name__)

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
    converted: dict = field(default_factory=dict)
    created: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest; ValueError if ``text`` is not one."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            return cls(**{**data, "shape": tuple(data["shape"])})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a source manifest ({exc})") from None


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
    """The sources cached under ``<data_dir>/sources``.

    ``exists``, ``manifest`` and ``load`` check a source's files first (``load`` also re-hashes its pixels). A
    damaged source is set aside as ``.<name>.corrupt`` and treated as absent: ``exists`` returns False (and
    logs a warning), ``manifest`` and ``load`` raise a one-line :class:`SourceError` naming the damaged file.
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "sources"
        remove_abandoned(self.root)

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        """Whether ``name`` is stored and its files are intact; a damaged source is set aside and reported absent."""
        if not self.path(name).exists():
            return False
        try:
            self._open(name)
        except SourceError as exc:
            log.warning("%s", exc)
            return False
        return True

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if NAME_PATTERN.match(p.name) and
                      (p / "manifest.json").is_file())

    def manifest(self, name: str) -> Manifest:
        """The manifest of a stored source; SourceError if it is absent or damaged (then set aside)."""
        return self._open(name)[0]

    def load(self, name: str) -> Source:
        """Load a source and check its pixels against the manifest's sha256; SourceError if it is absent or
        damaged (then set aside)."""
        manifest, images = self._open(name)
        folder = self.path(name)
        if content_hash(images) != manifest.sha256:
            raise self._set_aside(name, folder / "images.npy", "no longer matches the sha256 in manifest.json")
        listing = folder / "files.json"
        try:
            if listing.is_file():
                files = json.loads(listing.read_text())
            else:  # stored before files.json: one name per line
                listing = folder / "files.txt"
                files = listing.read_bytes().decode().split("\n")[:-1]  # not read_text: it turns "\r" into "\n"
        except (FileNotFoundError, ValueError):  # gone meanwhile; not JSON or not UTF-8 text
            files = None
        if not isinstance(files, list) or len(files) != manifest.count or not all(isinstance(f, str) for f in files):
            raise self._set_aside(name, listing, f"is not a list of {manifest.count} file names")
        return Source(manifest, images, tuple(files))

    def _open(self, name: str) -> tuple[Manifest, np.ndarray]:
        """The manifest and memory-mapped pixels of a stored source, after checking that its files are there and
        readable (without re-hashing); raises SourceError if it is absent or damaged (then set aside)."""
        folder = self.path(name)
        if not folder.exists():
            raise SourceError(
                f"source {name!r} is not in {self.root}. Import it with `bench data import`, "
                f"or run a suite that declares it. Cached: {', '.join(self.names()) or 'none'}"
                f"{'' if self.names() else ' (is --data-dir / BENCH_DATA_DIR the cache you meant?)'}"
            )
        file = folder / "manifest.json"
        try:
            manifest = Manifest.from_json(file.read_text())
            file = folder / "images.npy"
            images = np.load(file, mmap_mode="r")
        except FileNotFoundError:
            raise self._set_aside(name, file, "is missing") from None
        except (ValueError, EOFError) as exc:  # not JSON or not a manifest; a truncated or garbled array
            raise self._set_aside(name, file, f"is unreadable ({exc})") from None
        if images.dtype != np.uint8 or images.shape != (manifest.count, *manifest.shape):
            raise self._set_aside(name, file, f"holds {images.dtype} {images.shape}, not the manifest's uint8 "
                                              f"{(manifest.count, *manifest.shape)}")
        if not (folder / "files.json").is_file() and not (folder / "files.txt").is_file():
            raise self._set_aside(name, folder / "files.json", "is missing")
        return manifest, images

    def _set_aside(self, name: str, file: Path, problem: str) -> SourceError:
        """Rename a damaged source to ``.<name>.corrupt`` and return the (one-line) error that says so."""
        problem, aside = " ".join(problem.split()), self.root / f".{name}.corrupt"
        try:
            if aside.exists():
                shutil.rmtree(aside)
            self.path(name).rename(aside)
        except FileNotFoundError:
            pass  # another process set it aside first
        except OSError as exc:
            return SourceError(f"source {name!r} is damaged: {file} {problem}; it cannot be set aside ({exc}): "
                               f"delete {self.path(name)} and import it again")
        return SourceError(f"source {name!r} is damaged: {file} {problem}; it was set aside as {aside} and the "
                           "next `bench run` (or `bench data import`) imports it again")

    def previous(self, name: str) -> Manifest | None:
        """The manifest of the copy of ``name`` that its last import replaced, if one is kept and readable."""
        try:
            return Manifest.from_json((self.root / "_previous" / name / "manifest.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def bring_back(self, name: str) -> None:
        """Swap the kept previous copy of ``name`` (see :meth:`previous`) with the current one."""
        swap = self.root / f".{name}.back.{secrets.token_hex(4)}{temp_suffix()}"
        (self.root / "_previous" / name).rename(swap)
        if self.path(name).exists():
            self._keep_previous(self.path(name), name)
        swap.rename(self.path(name))

    def _keep_previous(self, folder: Path, name: str) -> None:
        """Keep ``folder``, a replaced copy of ``name``, as its previous copy (dropping an older one)."""
        kept = self.root / "_previous" / name
        if kept.exists():
            shutil.rmtree(kept)
        kept.parent.mkdir(exist_ok=True)
        folder.rename(kept)

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
        converted: dict | None = None,
    ) -> Manifest:
        """Store a new source atomically and return its manifest. Replaces a source of the same name, which is
        kept as its previous copy."""
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
            converted=converted or {},
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=temp_suffix(), dir=self.root))
        try:
            np.save(tmp / "images.npy", np.ascontiguousarray(images))
            (tmp / "files.json").write_text(json.dumps(list(files)))
            (tmp / "manifest.json").write_text(manifest.to_json())
            final = self.path(name)
            if final.exists():
                old = self.root / f".{name}.old.{secrets.token_hex(4)}{temp_suffix()}"
                final.rename(old)
                tmp.rename(final)
                self._keep_previous(old, name)
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
