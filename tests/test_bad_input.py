"""Bad input gives one line naming the file and the fix, never a traceback; tiny files made in tmp_path."""

from __future__ import annotations

import importlib
import os
import struct
import zipfile
import zlib
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.cli import EXPECTED_ERRORS, friendly_errors, main
from bench.importer import IMPORTERS, ImportContext, SourceSpec
from bench.importers import import_folder, import_npz
from bench.sources import SourceError, SourceStore


def _png(folder: Path, name: str | bytes, colour: tuple[int, int, int] = (10, 20, 30)) -> None:
    """A 32x32 RGB PNG; a bytes ``name`` is written as it is, whatever its encoding."""
    with open(os.path.join(os.fsencode(folder), os.fsencode(name)), "wb") as handle:
        Image.new("RGB", (32, 32), colour).save(handle, "PNG")


def _png48(pixels: np.ndarray) -> bytes:
    """A PNG of 16 bits per channel (colour type 2, bit depth 16) holding the (H, W, 3) uint16 ``pixels``."""
    height, width, _ = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    _png(folder, "ok.png")
    return folder


def _non_utf8(folder: Path, data: bytes | None = None) -> None:
    try:
        if data is None:
            _png(folder, b"bad\xff.png", (1, 2, 3))
        else:
            with open(os.path.join(os.fsencode(folder), b"bad\xff.png"), "wb") as handle:
                handle.write(data)
    except OSError:
        pytest.skip("this file system refuses file names that are not UTF-8")


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_file_name_that_is_not_utf8_is_stored_escaped(tmp_path, images, skip_bad):
    _non_utf8(images)
    store = SourceStore(tmp_path / "cache")
    manifest = import_folder(store, images, "odd", "fake", skip_bad=skip_bad)
    assert manifest.count == 2 and manifest.converted == {"file name not UTF-8, stored with \\x escapes": 1}
    files = store.load("odd").files
    assert files == ("bad\\xff.png", "ok.png")
    "\n".join(files).encode()  # writable as UTF-8, e.g. in an audit report


def test_a_bad_image_with_a_name_that_is_not_utf8_is_named_printably(tmp_path, images):
    _non_utf8(images, b"junk")
    with pytest.raises(SourceError, match=r"^bad\\xff\.png: not a readable image") as error:
        import_folder(SourceStore(tmp_path / "cache"), images, "odd", "fake")
    str(error.value).encode()
    assert import_folder(SourceStore(tmp_path / "cache"), images, "odd", "fake", skip_bad=True).skipped == {
        "unreadable": 1}


def _npz_with_header(path: Path, shape: tuple[int, ...], descr: str = "|u1") -> None:
    """An .npz whose ``images`` member declares ``shape`` but holds no data."""
    with zipfile.ZipFile(path, "w") as archive, archive.open("images.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {"descr": descr, "fortran_order": False, "shape": shape})


def _npy(path: Path) -> None:
    """A plain .npy file, whatever its name."""
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((2, 32, 32, 3), np.uint8))


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (_npy, "x.npz: a single .npy array, not an .npz archive. Save the images with numpy.savez(FILE, images="),
        (lambda p: p.write_bytes(b"garbage!"), "x.npz: not an .npz archive (not a zip file). Save the images"),
        (lambda p: _npz_with_header(p, (10**9, 3, 256, 256)),
         "x.npz['images']: a uint8 array of shape (1000000000, 3, 256, 256) takes 196,608.0 GB, more than the"),
        (lambda p: _npz_with_header(p, (2, 3, 32, 32), "|O"),
         "x.npz is not a readable .npz file (Object arrays cannot be loaded when allow_pickle=False)"),
        (lambda p: _npz_with_header(p, (2, 3, 32, 32)), "x.npz is not a readable .npz file"),
    ],
    ids=["plain-npy", "garbage", "too-big", "objects", "truncated"],
)
def test_bad_npz_files_are_refused_in_one_line(tmp_path, write, message):
    path = tmp_path / "x.npz"
    write(path)
    with pytest.raises(SourceError) as error:
        import_npz(SourceStore(tmp_path / "cache"), path, "arr", "fake")
    assert str(error.value).startswith(f"{tmp_path}/{message}") and "\n" not in str(error.value)
    assert "pickled" not in str(error.value)


def test_a_48_bit_png_is_reduced_to_8_bits_and_counted(tmp_path, images):
    pixels = np.full((32, 32, 3), 0x1234, np.uint16)
    pixels[0, 0] = (0xFFFF, 0x00FF, 0xFF00)
    (images / "deep.png").write_bytes(_png48(pixels))
    store = SourceStore(tmp_path / "cache")
    manifest = import_folder(store, images, "deep", "fake")
    assert manifest.converted == {"16-bit PNG reduced to 8 bits": 1}
    assert manifest.encoding == {"files": {"PNG": 2}}
    stored = store.load("deep").images[0]  # deep.png sorts first
    assert stored[:, 0, 0].tolist() == [255, 0, 255] and stored[:, 1, 1].tolist() == [0x12] * 3


def _context(tmp_path: Path) -> ImportContext:
    return ImportContext(SourceStore(tmp_path / "cache"), tmp_path, tmp_path / "cache")


def test_a_bad_image_in_a_suite_source_suggests_the_suite_key(tmp_path, images):
    (images / "cut.png").write_bytes(b"\x89PNG junk")
    spec = SourceSpec(importer="folder", label="fake", path="images")
    with pytest.raises(SourceError) as error:
        IMPORTERS.get("folder").load("mine", spec, _context(tmp_path))
    assert str(error.value).startswith(f"source mine (folder {images}): cut.png: not a readable image (")
    assert str(error.value).endswith(". Re-download or delete the file, or set `skip_bad: true` on the source in "
                                     "the suite to skip such files (they are counted).")
    assert "--skip-bad" not in str(error.value)
    skipping = SourceSpec(importer="folder", label="fake", path="images", skip_bad=True)
    assert IMPORTERS.get("folder").load("mine", skipping, _context(tmp_path)).skipped == {"unreadable": 1}


def test_a_bad_cifake_file_in_a_suite_names_the_source(tmp_path):
    folder = tmp_path / "cifake" / "test" / "FAKE"
    folder.mkdir(parents=True)
    _png(folder, "1.png")
    Image.new("RGB", (64, 64)).save(folder / "2.png")
    spec = SourceSpec(importer="cifake", label="fake")
    with pytest.raises(SourceError, match=r"^source fake \(CIFAKE .*cifake\): test/FAKE/2.png: size 64x64, "
                                          r"expected 32x32\. .*, or set `skip_bad: true` on the source in the suite"):
        IMPORTERS.get("cifake").load("fake", spec, _context(tmp_path))


def test_the_command_line_suggests_its_own_flag(tmp_path, images):
    (images / "notes.txt").write_text("hello")
    command = ["data", "import", "folder", str(images), "--name", "x", "--label", "fake", "--data-dir",
               str(tmp_path / "cache")]
    refused = CliRunner().invoke(main, command)
    assert refused.exit_code == 1 and refused.output == (
        f"Error: {images}: holds files that are not images (notes.txt). Move them out, or pass --skip-bad to skip "
        "such files (they are counted).\n")
    skipped = CliRunner().invoke(main, [*command, "--skip-bad"])
    assert skipped.exit_code == 0 and skipped.output.startswith("x: 1 images")


@pytest.mark.parametrize(("module", "name"), sorted(EXPECTED_ERRORS.items()))
def test_expected_errors_become_one_line(module, name):
    error = getattr(importlib.import_module(module), name)

    @friendly_errors
    def command() -> None:
        raise error("the input is bad: fix it")

    with pytest.raises(click.ClickException, match="^the input is bad: fix it$"):
        command()


def test_the_new_expected_errors_are_listed():
    assert {("bench.plan", "PlanError"), ("bench.executors", "ExecutorError"), ("bench.files", "NotWritableError")} \
        <= set(EXPECTED_ERRORS.items())
    assert issubclass(importlib.import_module("bench.generator").GeneratorError, SourceError)
