"""Importers: turn CIFAKE (Kaggle zip or extracted folder), image folders and .npz arrays into sources.

Images are decoded once, checked (RGB, expected size, decodable), and stored lossless as uint8 arrays;
each source records how its files were encoded (format, JPEG quality and chroma subsampling), because a
detector can learn a file-format difference instead of real-vs-fake.
"""

from __future__ import annotations

import io
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from bench.sources import Label, Manifest, SourceError, SourceStore, validate_images

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
CIFAKE_URL = (
    "https://www.kaggle.com/api/v1/datasets/download/birdy654/cifake-real-and-ai-generated-synthetic-images"
)
CIFAKE_CLASS_DIRS: dict[Label, str] = {"real": "REAL", "fake": "FAKE"}
CIFAKE_SOURCE_NAMES: dict[Label, str] = {"real": "cifake-real", "fake": "cifake-sd14"}


class ImageFileError(SourceError):
    """One input file cannot become a 32x32 RGB image; the message names the file and the fix."""

    def __init__(self, file: str, problem: str, fix: str, reason: str) -> None:
        super().__init__(f"{file}: {problem}. {fix}, or pass --skip-bad to skip such files (they are counted).")
        self.reason = reason


def cifake_source_name(label: Label, split: str) -> str:
    """The cached name of a CIFAKE split, e.g. ``cifake-sd14-train``."""
    return f"{CIFAKE_SOURCE_NAMES[label]}-{split}"


@cache
def _pillow_quality_tables() -> dict[tuple, int]:
    """Pillow's luminance quantization table at each quality 1..100, for naming a file's quality."""
    tables = {}
    probe = Image.new("RGB", (8, 8))
    for quality in range(1, 101):
        buffer = io.BytesIO()
        probe.save(buffer, "JPEG", quality=quality)
        with Image.open(buffer) as im:
            tables.setdefault(tuple(im.quantization[0]), quality)
    return tables


def describe_encoding(image: Image.Image) -> str:
    """A short description of how a file was encoded, e.g. ``JPEG q75 4:2:0``."""
    if image.format != "JPEG":
        return str(image.format)
    quality = _pillow_quality_tables().get(tuple(image.quantization.get(0, ())))
    sampling = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(JpegImagePlugin.get_sampling(image), "other")
    return f"JPEG {'q' + str(quality) if quality else 'custom tables'} {sampling}"


def decode_image(data: bytes, file: str, size: int) -> tuple[np.ndarray, str]:
    """Decode one image file into (3, size, size) uint8 and its encoding; raise ImageFileError if unusable."""
    if not data:
        raise ImageFileError(file, "the file is empty", "Replace it with the original image", "empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            encoding = describe_encoding(image)
            mode, (width, height) = image.mode, image.size
            pixels = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageFileError(
            file, f"not a readable image ({exc})", "Re-download or delete the file", "unreadable"
        ) from exc
    if mode != "RGB":
        raise ImageFileError(
            file,
            f"colour mode {mode}, expected 8-bit RGB",
            "Convert it to RGB first (e.g. Pillow's Image.convert('RGB'))",
            f"mode {mode}",
        )
    if (width, height) != (size, size):
        raise ImageFileError(
            file,
            f"size {width}x{height}, expected {size}x{size}",
            f"Resize the images to {size}x{size} first",
            "wrong size",
        )
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)), encoding


def decode_all(
    items: Iterable[tuple[str, Callable[[], bytes]]], size: int, skip_bad: bool
) -> tuple[np.ndarray, list[str], dict, dict]:
    """Decode ``(file name, read)`` pairs into an array; returns images, files, encoding and skipped counts."""
    images, files, encodings, skipped = [], [], Counter(), Counter()
    for file, read in items:
        try:
            pixels, encoding = decode_image(read(), file, size)
        except ImageFileError as exc:
            if not skip_bad:
                raise
            skipped[exc.reason] += 1
            continue
        images.append(pixels)
        files.append(file)
        encodings[encoding] += 1
    array = np.stack(images) if images else np.empty((0, 3, size, size), np.uint8)
    return array, files, dict(encodings), dict(skipped)


def import_folder(
    store: SourceStore,
    folder: Path,
    name: str,
    label: Label,
    split: str = "test",
    size: int = 32,
    skip_bad: bool = False,
) -> Manifest:
    """Import every image file directly inside ``folder`` as one source."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder} is not a folder of images: check the path")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    others = [p.name for p in paths if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others and not skip_bad:
        raise SourceError(
            f"{folder} holds files that are not images ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}): move them out, or pass --skip-bad to skip them"
        )
    images_paths = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images_paths:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
        hint = f" It has sub-folders ({', '.join(subfolders)}): import each one." if subfolders else ""
        raise SourceError(f"{folder} contains no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).{hint}")
    images, files, encoding, skipped = decode_all(
        ((p.name, p.read_bytes) for p in images_paths), size, skip_bad
    )
    if others:
        skipped["not an image file"] = len(others)
    validate_images(images, f"{folder}")
    origin = {"importer": "folder", "path": str(folder.resolve())}
    return store.save(name, images, label, split, origin, {"files": encoding}, files, skipped)


def import_npz(
    store: SourceStore,
    path: Path,
    name: str,
    label: Label,
    split: str = "test",
    key: str = "images",
    size: int = 32,
) -> Manifest:
    """Import a uint8 array stored under ``key`` in an .npz file, as (N, 3, H, W) or (N, H, W, 3)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise SourceError(f"{path} has no array {key!r} (it has {archive.files}): pass --key NAME")
            images = archive[key]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{path} is not a readable .npz file ({exc})") from exc
    if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.transpose(0, 3, 1, 2)
    validate_images(images, f"{path}[{key!r}]")
    if images.shape[2:] != (size, size):
        raise SourceError(f"{path}[{key!r}]: images are {images.shape[2]}x{images.shape[3]}, expected {size}x{size}")
    origin = {"importer": "npz", "path": str(path.resolve()), "key": key}
    files = [f"{path.name}[{i}]" for i in range(len(images))]
    encoding = {"files": {"array": len(images)}}
    return store.save(name, np.ascontiguousarray(images), label, split, origin, encoding, files)


def locate_cifake(data_root: Path | None, download_dir: Path) -> Path:
    """Find CIFAKE (zip or extracted folder) under ``data_root`` or in the download cache, else download it."""
    candidates = []
    if data_root is not None:
        data_root = Path(data_root)
        candidates += [data_root / "cifake.zip", data_root / "cifake", data_root]
    candidates.append(download_dir / "cifake.zip")
    for candidate in candidates:
        if candidate.is_file() and zipfile.is_zipfile(candidate):
            return candidate
        if candidate.is_dir() and any(
            (candidate / split / folder).is_dir() for split in ("train", "test") for folder in ("REAL", "FAKE")
        ):
            return candidate
    return download_cifake(download_dir / "cifake.zip", looked_in=candidates[:-1])


def download_cifake(dest: Path, looked_in: list[Path] = (), url: str | None = None) -> Path:
    """Download the CIFAKE Kaggle archive to ``dest`` (written atomically, checked to be a CIFAKE zip)."""
    url = url or os.environ.get("BENCH_CIFAKE_URL", CIFAKE_URL)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".zip.part")
    looked = ", ".join(str(p) for p in looked_in) or "nowhere (no --data-root given)"
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise SourceError(
            f"CIFAKE is not available locally and could not be downloaded from {url} ({exc}). "
            f"Looked in: {looked}. Download the archive from Kaggle (birdy654/cifake-real-and-ai-generated-"
            "synthetic-images) and pass --data-root DIR (or set BENCH_DATA_ROOT) where DIR holds cifake.zip "
            "or the extracted train/ and test/ folders."
        ) from exc
    if not zipfile.is_zipfile(partial) or not any(
        n.startswith(("train/REAL/", "test/REAL/")) for n in zipfile.ZipFile(partial).namelist()
    ):
        partial.unlink()
        raise SourceError(f"the download from {url} is not the CIFAKE archive (no train/REAL or test/REAL)")
    partial.replace(dest)
    return dest


def import_cifake(
    store: SourceStore,
    location: Path,
    split: str,
    label: Label,
    name: str | None = None,
    skip_bad: bool = False,
) -> Manifest:
    """Import one CIFAKE split and class (``train``/``test`` x ``real``/``fake``) from the zip or folder."""
    if split not in ("train", "test"):
        raise SourceError(f"CIFAKE split must be 'train' or 'test', got {split!r}")
    prefix = f"{split}/{CIFAKE_CLASS_DIRS[label]}/"
    name = name or cifake_source_name(label, split)
    if location.is_file():
        with zipfile.ZipFile(location) as archive:
            members = sorted(n for n in archive.namelist() if n.startswith(prefix) and not n.endswith("/"))
            _require_members(members, location, prefix)
            images, files, encoding, skipped = decode_all(
                ((m, lambda m=m: archive.read(m)) for m in members), 32, skip_bad
            )
    else:
        folder = location / prefix
        paths = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        _require_members(paths, location, prefix)
        images, files, encoding, skipped = decode_all(
            ((f"{prefix}{p.name}", p.read_bytes) for p in paths), 32, skip_bad
        )
    validate_images(images, f"{location}:{prefix}")
    origin = {"importer": "cifake", "path": str(location.resolve()), "members": prefix}
    return store.save(name, images, label, split, origin, {"files": encoding}, files, skipped)


def _require_members(members: list, location: Path, prefix: str) -> None:
    if not members:
        raise SourceError(
            f"{location} has no {prefix} images: expected the Kaggle CIFAKE layout "
            "train/REAL, train/FAKE, test/REAL, test/FAKE"
        )
