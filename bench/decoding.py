"""Decoding: image files and arrays into uint8 (N, 3, H, W) pixels, with what was found on the way.

Images are decoded once and checked (RGB, expected size, decodable, a header that does not promise a huge image);
each file's encoding is named (format, JPEG quality and chroma subsampling), because a detector can learn a
file-format difference instead of real-vs-fake, and what was changed is counted (16-bit channels reduced to 8 bits,
file names that are not UTF-8 kept with ``\\xNN`` escapes). Files that cannot be used raise
:class:`ImageFileError`, or, when bad files are skipped, are counted by reason. Importers
(:mod:`bench.importers`) store what this module decodes.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin
from tqdm.auto import tqdm

from bench.sources import SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGE_SIDE = 4096  # pixels; a larger file is refused from its header, before it is decoded
CLI_SKIP = "pass --skip-bad"
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


def decode_all(items: Iterable[tuple[str, Callable[[], bytes]]], size: int | None, skip_bad: bool,
               progress: bool | None = False, description: str = "decoding", total: int | None = None) -> Decoded:
    """Decode ``(file name, read)`` pairs into an array (file names made printable), with a progress bar of
    ``total`` files (``progress`` None: on a terminal only).

    With ``size`` None the images may have any square size, the same for all: the most common one.
    """
    decoded, skipped = [], Counter()
    bar = tqdm(items, desc=description, total=total, unit="file", leave=False, mininterval=1,
               disable=None if progress is None else not progress)
    for name, read in bar:
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
