"""Importers: turn CIFAKE (Kaggle zip or extracted folder), image folders and .npz arrays into sources.

Images are decoded once, checked (RGB, expected size, decodable), and stored lossless as uint8 arrays;
each source records how its files were encoded (format, JPEG quality and chroma subsampling), because a
detector can learn a file-format difference instead of real-vs-fake, and what was changed on the way (16-bit
channels reduced to 8 bits, file names that are not UTF-8 stored with ``\\xNN`` escapes).
"""

from __future__ import annotations

import io
import math
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, JpegImagePlugin

from bench.files import file_sha256
from bench.parts import PartImporter
from bench.provenance import content_key
from bench.registry import Registry
from bench.sources import Label, Manifest, SourceError, SourceStore, validate_images

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGE_SIDE = 4096  # pixels; a larger file is refused from its header, before it is decoded
CIFAKE_URL = (
    "https://www.kaggle.com/api/v1/datasets/download/birdy654/cifake-real-and-ai-generated-synthetic-images"
)
CIFAKE_CLASS_DIRS: dict[Label, str] = {"real": "REAL", "fake": "FAKE"}
CIFAKE_SOURCE_NAMES: dict[Label, str] = {"real": "cifake-real", "fake": "cifake-sd14"}
CLI_SKIP = "pass --skip-bad"
SUITE_SKIP = "set `skip_bad: true` on the source in the suite"
NAME_ESCAPED = "file name not UTF-8, stored with \\x escapes"


class ImageFileError(SourceError):
    """An input file that skipping bad files would skip; the message names the file, the fix and the skip."""

    def __init__(self, file: str, problem: str, fix: str, reason: str) -> None:
        self.file, self.problem, self.fix, self.reason = file, problem, fix, reason
        super().__init__(self.explain(CLI_SKIP))

    def explain(self, skip: str) -> str:
        """The message with ``skip`` (e.g. "pass --skip-bad") as the way to skip such files."""
        return f"{self.file}: {self.problem}. {self.fix}, or {skip} to skip such files (they are counted)."


@dataclass(frozen=True)
class Decoded:
    """Images decoded from files, their file names, and counts of their encodings, of the files skipped and of
    the changes made, by reason."""

    images: np.ndarray
    files: list[str]
    encoding: dict[str, int]
    skipped: dict[str, int]
    converted: dict[str, int]


def printable_name(name: str) -> str:
    """``name`` as valid UTF-8 text: bytes of a file name that are not UTF-8 become ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


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


def _rawmodes(image: Image.Image) -> list[str]:
    """How the tiles of an opened (not yet loaded) image store their pixels, e.g. ``RGB;16B``."""
    return [args if isinstance(args, str) else str(args[0]) for *_, args in image.tile if args]


def _check_size(file: str, width: int, height: int, size: int | None) -> None:
    """Raise ImageFileError for an image that is not ``size`` x ``size`` (when given) or has a side over
    :data:`MAX_IMAGE_SIDE`, from the size its header states."""
    if size is not None and (width, height) != (size, size):
        raise ImageFileError(file, f"size {width}x{height}, expected {size}x{size}",
                             f"Resize the images to {size}x{size} first", "wrong size")
    if max(width, height) > MAX_IMAGE_SIDE:
        raise ImageFileError(file, f"size {width}x{height}, larger than {MAX_IMAGE_SIDE} pixels a side (refused "
                             "before decoding)", "Downscale it first", "too large")


def decode_image(data: bytes, file: str, size: int | None) -> tuple[np.ndarray, str, str | None]:
    """Decode one image file into (3, size, size) uint8 (any square size if None), its encoding and the change
    made to its pixels (None if none); raise ImageFileError if unusable."""
    if not data:
        raise ImageFileError(file, "the file is empty", "Replace it with the original image", "empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_size(file, *image.size, size)  # from the header: nothing is decoded yet
            deep = image.mode == "RGB" and any(";16" in rawmode for rawmode in _rawmodes(image))
            image.load()
            encoding = describe_encoding(image)
            mode, pixels = image.mode, np.asarray(image)
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
    conversion = f"16-bit {encoding} reduced to 8 bits" if deep else None  # Pillow keeps the high bytes
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)), encoding, conversion


def decode_all(items: Iterable[tuple[str, Callable[[], bytes]]], size: int | None, skip_bad: bool) -> Decoded:
    """Decode ``(file name, read)`` pairs into an array (file names made printable).

    With ``size`` None the images may have any square size, the same for all: the most common one.
    """
    decoded, skipped = [], Counter()
    for name, read in items:
        file = printable_name(name)
        try:
            pixels, encoding, conversion = decode_image(read(), file, size)
        except ImageFileError as exc:
            if not skip_bad:
                raise
            skipped[exc.reason] += 1
            continue
        changes = [change for change in (conversion, NAME_ESCAPED if file != name else None) if change]
        decoded.append((file, pixels, encoding, changes))
    if size is None and decoded:
        shape = Counter(pixels.shape[1:] for _, pixels, *_ in decoded).most_common(1)[0][0]
        odd = [(file, pixels.shape) for file, pixels, *_ in decoded if pixels.shape[1:] != shape]
        if shape[0] != shape[1]:
            raise SourceError(f"the images are {shape[1]}x{shape[0]} pixels: resize or crop them to a square size")
        if odd and not skip_bad:
            file, (_, height, width) = odd[0]
            raise ImageFileError(file, f"size {width}x{height}, expected {shape[0]}x{shape[0]} like most images "
                                 "beside it", f"Resize the images to {shape[0]}x{shape[0]} first", "wrong size")
        skipped["wrong size"] += len(odd)
        size = shape[0]
        decoded = [d for d in decoded if d[1].shape[1:] == shape]
    array = np.stack([d[1] for d in decoded]) if decoded else np.empty((0, 3, size or 32, size or 32), np.uint8)
    return Decoded(array, [d[0] for d in decoded], dict(Counter(d[2] for d in decoded)), dict(+skipped),
                   dict(Counter(change for d in decoded for change in d[3])))


def import_folder(
    store: SourceStore,
    folder: Path,
    name: str,
    label: Label,
    split: str = "test",
    size: int | None = None,
    skip_bad: bool = False,
    root: Path | None = None,
) -> Manifest:
    """Import every image file directly inside ``folder`` as one source (square images of one size).

    Entries that are not regular files (a FIFO, a socket, a dangling link) are never opened, and files whose
    links lead outside ``root`` (the data root; by default ``folder`` itself) are never read: without
    ``skip_bad`` either stops the import naming them, with it they are skipped and counted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder} is not a folder of images: check the path")
    inside = Path(root or folder).resolve()
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and not p.is_dir())
    bad = {"not a regular file": [p for p in entries if not p.is_file()],
           "link outside the data root": [p for p in entries if p.is_file() and not p.resolve().is_relative_to(inside)]}
    paths = [p for p in entries if p.is_file() and p.resolve().is_relative_to(inside)]
    others = [printable_name(p.name) for p in paths if p.suffix.lower() not in IMAGE_SUFFIXES]
    what = {"not an image file": "files that are not images", "not a regular file": "entries that are not regular "
            "files (FIFOs, sockets, devices, broken links)", "link outside the data root": "links that lead outside "
            "the data root"}
    for reason, found in (("not an image file", others), *bad.items()):
        if found and not skip_bad:
            names = [name if isinstance(name, str) else printable_name(name.name) for name in found]
            listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise ImageFileError(str(folder), f"holds {what[reason]} ({listed})", "Move them out", reason)
    images_paths = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images_paths:
        subfolders = sorted(printable_name(p.name) for p in folder.iterdir() if p.is_dir())
        hint = f" It has sub-folders ({', '.join(subfolders)}): import each one." if subfolders else ""
        raise SourceError(f"{folder} contains no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).{hint}")
    decoded = decode_all(((p.name, p.read_bytes) for p in images_paths), size, skip_bad)
    for reason, found in (("not an image file", others), *bad.items()):
        if found:
            decoded.skipped[reason] = len(found)
    validate_images(decoded.images, f"{folder}")
    origin = {"importer": "folder", "path": str(folder.resolve()),
              "identity": folder_identity(folder, label, split, skip_bad)}
    return store.save(name, decoded.images, label, split, origin, {"files": decoded.encoding}, decoded.files,
                      decoded.skipped, decoded.converted)


def import_npz(
    store: SourceStore,
    path: Path,
    name: str,
    label: Label,
    split: str = "test",
    key: str = "images",
) -> Manifest:
    """Import a uint8 array stored under ``key`` in an .npz file, as (N, 3, H, W) or (N, H, W, 3)."""
    path = Path(path)
    images = read_npz_array(path, key)
    if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.transpose(0, 3, 1, 2)
    validate_images(images, f"{path}[{key!r}]")
    if images.shape[2] != images.shape[3]:
        raise SourceError(f"{path}[{key!r}]: images are {images.shape[2]}x{images.shape[3]}, expected square images")
    origin = {"importer": "npz", "path": str(path.resolve()), "key": key,
              "identity": npz_identity(path, key, label, split)}
    files = [f"{path.name}[{i}]" for i in range(len(images))]
    encoding = {"files": {"array": len(images)}}
    return store.save(name, np.ascontiguousarray(images), label, split, origin, encoding, files)


def available_memory() -> int:
    """Bytes of memory a new array can take: MemAvailable on Linux, else the machine's physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def read_npz_array(path: Path, key: str) -> np.ndarray:
    """The array ``key`` of the .npz file ``path``, after its header shows it fits in memory; SourceError if not."""
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as handle:
                npy = handle.read(6) == b"\x93NUMPY"
            problem = "a single .npy array, not an .npz archive" if npy else "not an .npz archive (not a zip file)"
            raise SourceError(f"{path}: {problem}. Save the images with numpy.savez(FILE, {key}=images), "
                              "or give the path of the .npz file")
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            member = f"{key}.npy" if f"{key}.npy" in names else key
            if member not in names:
                arrays = [n.removesuffix(".npy") for n in names]
                raise SourceError(f"{path} has no array {key!r} (it has {arrays}): pass --key NAME")
            with archive.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, _, dtype = read_header(handle)
            size, free = math.prod(shape) * dtype.itemsize, available_memory()
            if size > free:
                raise SourceError(f"{path}[{key!r}]: a {dtype} array of shape {shape} takes {size / 1e9:,.1f} GB, "
                                  f"more than the {free / 1e9:,.1f} GB of memory available. Split it into "
                                  "several .npz files, or import it on a machine with more memory")
            with archive.open(member) as handle:
                return np.lib.format.read_array(handle, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{path} is not a readable .npz file ({exc})") from exc


def _cifake_candidates(data_root: Path | None, download_dir: Path) -> list[Path]:
    data_root = Path(data_root) if data_root is not None else None
    return [*([data_root / "cifake.zip", data_root / "cifake", data_root] if data_root else []),
            download_dir / "cifake.zip"]


def find_cifake(data_root: Path | None, download_dir: Path) -> Path | None:
    """CIFAKE (zip or extracted folder) under ``data_root`` or in the download cache; None if not there."""
    for candidate in _cifake_candidates(data_root, download_dir):
        if candidate.is_file() and zipfile.is_zipfile(candidate):
            return candidate
        if candidate.is_dir() and any(
            (candidate / split / folder).is_dir() for split in ("train", "test") for folder in ("REAL", "FAKE")
        ):
            return candidate
    return None


def locate_cifake(data_root: Path | None, download_dir: Path) -> Path:
    """Find CIFAKE (zip or extracted folder) under ``data_root`` or in the download cache, else download it."""
    found = find_cifake(data_root, download_dir)
    if found is not None:
        return found
    return download_cifake(download_dir / "cifake.zip", looked_in=_cifake_candidates(data_root, download_dir)[:-1])


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
            decoded = decode_all(((m, lambda m=m: archive.read(m)) for m in members), 32, skip_bad)
    else:
        folder = location / prefix
        paths = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        _require_members(paths, location, prefix)
        decoded = decode_all(((f"{prefix}{p.name}", p.read_bytes) for p in paths), 32, skip_bad)
    validate_images(decoded.images, f"{location}:{prefix}")
    origin = {"importer": "cifake", "path": str(location.resolve()), "members": prefix,
              "identity": cifake_identity(location, split, label, skip_bad)}
    return store.save(name, decoded.images, label, split, origin, {"files": decoded.encoding}, decoded.files,
                      decoded.skipped, decoded.converted)


def _require_members(members: list, location: Path, prefix: str) -> None:
    if not members:
        raise SourceError(
            f"{location} has no {prefix} images: expected the Kaggle CIFAKE layout "
            "train/REAL, train/FAKE, test/REAL, test/FAKE"
        )


# ---- identities: what a cached source must match to be reused ------------------------------------------------


def _identity(importer: str, path: Path, listing: list, **settings: object) -> str:
    """A content key over an importer's input: its resolved path, a hash of its file listing, its settings."""
    return content_key({"importer": importer, "path": str(Path(path).resolve()), "listing": content_key(listing),
                        **settings})


def cifake_identity(location: Path, split: str, label: Label, skip_bad: bool) -> str:
    """Identity of one CIFAKE part: the archive or folder, and the names, sizes (and CRCs) of its members."""
    prefix = f"{split}/{CIFAKE_CLASS_DIRS[label]}/"
    if location.is_file():
        with zipfile.ZipFile(location) as archive:
            listing = [(i.filename, i.file_size, i.CRC) for i in archive.infolist()
                       if i.filename.startswith(prefix) and not i.is_dir()]
    else:
        folder = location / prefix
        listing = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return _identity("cifake", location, listing, split=split, label=label, skip_bad=skip_bad)


def folder_identity(folder: Path, label: Label, split: str, skip_bad: bool) -> str:
    """Identity of a folder source: the folder and the names and sizes of the files in it."""
    listing = sorted((os.fsencode(p.name).hex(), p.stat().st_size) for p in Path(folder).iterdir() if p.is_file())
    return _identity("folder", folder, listing, label=label, split=split, skip_bad=skip_bad)


def npz_identity(path: Path, key: str, label: Label, split: str) -> str:
    """Identity of an .npz source: the file's sha256 and the array's name."""
    return _identity("npz", path, [file_sha256(path)], key=key, label=label, split=split)


# ---- the importer registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportContext:
    """Where importers read from and write to."""

    store: SourceStore
    data_root: Path | None
    data_dir: Path
    device: str = "auto"
    progress: bool | None = None

    def input_path(self, path: str) -> Path:
        """A suite's ``path:`` under the data root (absolute paths as they are)."""
        if Path(path).is_absolute():
            return Path(path)
        if self.data_root is None:
            raise SourceError(f"{path!r} is read relative to the data root: pass --data-root DIR "
                              "(or set BENCH_DATA_ROOT)")
        return Path(self.data_root) / path


class Importer(Protocol):
    """A way to obtain a source. ``fields``: the suite keys it takes besides importer, label, split, skip_bad."""

    fields: frozenset[str]

    def check(self, spec: Any) -> None:
        """Raise ValueError (with what is allowed) if ``spec`` cannot work; called when a suite loads."""

    def identity(self, spec: Any, context: ImportContext) -> str | None:
        """The key a cached source must carry to be reused; None when it cannot be known without importing."""

    def load(self, name: str, spec: Any, context: ImportContext) -> Manifest:
        """Import (or generate) the source ``name`` into ``context.store``."""

    def count(self, spec: Any, context: ImportContext) -> int | None:
        """How many images the source will hold, if that can be told without importing (for estimates)."""


IMPORTERS: Registry[Importer] = Registry("importer", "bench.importers", "bench.importers")


def _for_suite(name: str, where: str, load: Callable[[], Manifest]) -> Manifest:
    """Run a suite source's import: its errors name the source and its input, and skip with the suite's key."""
    try:
        return load()
    except ImageFileError as exc:
        raise SourceError(f"source {name} ({where}): {exc.explain(SUITE_SKIP)}") from exc
    except SourceError as exc:
        raise SourceError(f"source {name} ({where}): {exc}") from exc


class CifakeImporter:
    """CIFAKE (Bird & Lotfi 2023) from cifake.zip or its extracted folder under the data root, else Kaggle."""

    fields = frozenset()

    def check(self, spec: Any) -> None:
        """Any split and label of CIFAKE exists."""

    def identity(self, spec: Any, context: ImportContext) -> str | None:
        location = find_cifake(context.data_root, context.data_dir / "downloads")
        return None if location is None else cifake_identity(location, spec.split, spec.label, spec.skip_bad)

    def load(self, name: str, spec: Any, context: ImportContext) -> Manifest:
        location = locate_cifake(context.data_root, context.data_dir / "downloads")
        return _for_suite(name, f"CIFAKE {location}", lambda: import_cifake(
            context.store, location, spec.split, spec.label, name=name, skip_bad=spec.skip_bad))

    def count(self, spec: Any, context: ImportContext) -> int | None:
        location = find_cifake(context.data_root, context.data_dir / "downloads")
        if location is None:
            return None
        prefix = f"{spec.split}/{CIFAKE_CLASS_DIRS[spec.label]}/"
        if location.is_file():
            with zipfile.ZipFile(location) as archive:
                return sum(n.startswith(prefix) and not n.endswith("/") for n in archive.namelist())
        folder = location / prefix
        return sum(p.is_file() for p in folder.iterdir()) if folder.is_dir() else None


class FolderImporter:
    """Every image file directly inside a folder (``path:`` under the data root)."""

    fields = frozenset({"path"})

    def check(self, spec: Any) -> None:
        if not spec.path:
            raise ValueError("the folder importer needs 'path' (relative to the data root)")

    def identity(self, spec: Any, context: ImportContext) -> str | None:
        folder = context.input_path(spec.path)
        return folder_identity(folder, spec.label, spec.split, spec.skip_bad) if folder.is_dir() else None

    def load(self, name: str, spec: Any, context: ImportContext) -> Manifest:
        folder = context.input_path(spec.path)
        root = None if Path(spec.path).is_absolute() else context.data_root  # links may not leave the data root
        return _for_suite(name, f"folder {folder}", lambda: import_folder(
            context.store, folder, name, spec.label, spec.split, skip_bad=spec.skip_bad, root=root))

    def count(self, spec: Any, context: ImportContext) -> int | None:
        folder = context.input_path(spec.path)
        if not folder.is_dir():
            return None
        return sum(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


class NpzImporter:
    """A uint8 image array in an .npz file (``path:`` under the data root, ``key:`` the array's name)."""

    fields = frozenset({"path", "key"})

    def check(self, spec: Any) -> None:
        if not spec.path:
            raise ValueError("the npz importer needs 'path' (relative to the data root)")

    def identity(self, spec: Any, context: ImportContext) -> str | None:
        path = context.input_path(spec.path)
        return npz_identity(path, spec.key, spec.label, spec.split) if path.is_file() else None

    def load(self, name: str, spec: Any, context: ImportContext) -> Manifest:
        return import_npz(context.store, context.input_path(spec.path), name, spec.label, spec.split, key=spec.key)

    def count(self, spec: Any, context: ImportContext) -> int | None:
        return None  # known once imported


class CachedImporter:
    """A source already in the cache, e.g. made by `bench data audit --deduplicate`."""

    fields = frozenset()

    def check(self, spec: Any) -> None:
        """Nothing to check until the cache is opened."""

    def identity(self, spec: Any, context: ImportContext) -> str | None:
        return None

    def load(self, name: str, spec: Any, context: ImportContext) -> Manifest:
        return context.store.manifest(name)  # raises, saying how to make it

    def count(self, spec: Any, context: ImportContext) -> int | None:
        return None  # a cached source's manifest says it


class GeneratorImporter:
    """Images sampled from a generator plugin (trained by the harness on ``train_source`` unless pretrained)."""

    fields = frozenset({"generator", "config", "train_source", "count", "seed"})

    def check(self, spec: Any) -> None:
        from bench.generator import GENERATORS, GeneratorError, resolve_config

        if spec.generator is None or spec.count is None:
            raise ValueError("the generator importer needs 'generator' and 'count'")
        try:
            resolve_config(GENERATORS.get(spec.generator), spec.config)
        except (GeneratorError, KeyError) as exc:
            raise ValueError(f"config: {exc}") from None
        if spec.label != "fake":
            raise ValueError("a generated source is labelled 'fake'")

    def identity(self, spec: Any, context: ImportContext) -> str | None:
        from bench.generator import plan_generation

        if spec.train_source and not context.store.exists(spec.train_source):
            return None
        return plan_generation(context.data_dir, spec.generator, spec.config, spec.train_source, spec.count,
                               spec.seed, spec.split).source_key

    def load(self, name: str, spec: Any, context: ImportContext) -> Manifest:
        from bench.generator import generate_source

        return generate_source(context.data_dir, spec.generator, spec.config, spec.train_source, spec.count,
                               spec.seed, name, split=spec.split, progress=context.progress, device=context.device)

    def count(self, spec: Any, context: ImportContext) -> int | None:
        return spec.count


class PerturbedImporter:
    """Another declared source with a corruption applied to every image (e.g. a blur control for a generator)."""

    fields = frozenset({"source", "perturbation"})

    def check(self, spec: Any) -> None:
        from bench.suite import PerturbationEntry

        if spec.source is None or spec.perturbation is None:
            raise ValueError("the perturbed importer needs 'source' and 'perturbation', e.g. {name: blur, sigma: 1}")
        PerturbationEntry.model_validate(spec.perturbation)

    def identity(self, spec: Any, context: ImportContext) -> str | None:
        from bench.suite import PerturbationEntry

        if not context.store.exists(spec.source):
            return None
        entry = PerturbationEntry.model_validate(spec.perturbation)
        return content_key({"importer": "perturbed", "source": context.store.manifest(spec.source).sha256,
                            "perturbation": entry.model_dump(), "label": spec.label, "split": spec.split})

    def load(self, name: str, spec: Any, context: ImportContext) -> Manifest:
        import torch

        from bench.perturbations import PERTURBATIONS
        from bench.suite import PerturbationEntry

        entry = PerturbationEntry.model_validate(spec.perturbation)
        source = context.store.load(spec.source)
        identity = self.identity(spec, context)
        generator = torch.Generator().manual_seed(int(identity[:8], 16))
        function, parts = PERTURBATIONS.get(entry.name), []
        for start in range(0, source.manifest.count, 1024):
            batch = torch.from_numpy(np.array(source.images[start : start + 1024])).float() / 255
            labels = torch.full((len(batch),), int(spec.label == "fake"))
            try:
                perturbed = function(batch, labels, None, generator, **entry.params)
            except (AttributeError, TypeError) as exc:
                raise SourceError(f"source {name!r}: perturbation {entry.label} needs a detector ({exc}); a perturbed "
                                  "source takes a corruption (jpeg, blur, noise, resize)") from None
            parts.append((perturbed.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        origin = {"importer": "perturbed", "source": {"name": source.name, "sha256": source.manifest.sha256},
                  "perturbation": entry.model_dump() | {"label": entry.label}, "identity": identity}
        encoding = {"format": "raw", "lossless": True, "files": {f"{entry.label} of {source.name}": len(source.images)}}
        files = [f"{entry.label}({file})" for file in source.files]
        return context.store.save(name, np.concatenate(parts), spec.label, spec.split, origin, encoding, files)

    def count(self, spec: Any, context: ImportContext) -> int | None:
        return context.store.manifest(spec.source).count if context.store.exists(spec.source) else None


for _name, _importer in (("cifake", CifakeImporter()), ("folder", FolderImporter()), ("npz", NpzImporter()),
                         ("cached", CachedImporter()), ("generator", GeneratorImporter()),
                         ("perturbed", PerturbedImporter()), ("part", PartImporter())):
    IMPORTERS.register(_name, _importer)
