"""Sources and importers on real files: hashing, manifests, CIFAKE, folders, .npz and bad input."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.decoding import decode_all
from bench.importers import download_cifake, import_cifake, import_folder, import_npz, locate_cifake
from bench.sources import SourceError, SourceStore, content_hash


def test_cifake_import_matches_the_archive(cifake):
    manifests = {n: cifake.manifest(n) for n in cifake.names()}
    assert {n: m.count for n, m in manifests.items()} == {
        "cifake-real-train": 45000, "cifake-sd14-train": 45000, "cifake-real-test": 10000, "cifake-sd14-test": 10000,
    }
    test_fake = cifake.load("cifake-sd14-test")
    assert test_fake.images.shape == (10000, 3, 32, 32) and test_fake.images.dtype == np.uint8
    assert test_fake.manifest.label == "fake" and test_fake.manifest.split == "test"
    assert test_fake.manifest.encoding == {"files": {"JPEG q75 4:2:0": 10000}}
    assert content_hash(test_fake.images) == test_fake.manifest.sha256
    # the pixels are those of the member named first in files.json
    files = json.loads((cifake.path("cifake-sd14-test") / "files.json").read_text())
    assert tuple(files) == test_fake.files and len(files) == 10000
    with zipfile.ZipFile(Path(test_fake.manifest.origin["path"])) as archive:
        first = np.asarray(Image.open(io.BytesIO(archive.read(files[0])))).transpose(2, 0, 1)
    assert np.array_equal(first, test_fake.images[0])


def test_content_hash_changes_with_one_pixel():
    images = np.zeros((4, 3, 32, 32), np.uint8)
    before = content_hash(images)
    images[2, 1, 5, 7] = 1
    assert content_hash(images) != before
    assert content_hash(images[:3]) != content_hash(images)


def test_saved_source_round_trips_and_detects_corruption(tmp_path):
    store = SourceStore(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    manifest = store.save("noise", images, "fake", "test", {"importer": "test"}, {}, [f"{i}" for i in range(5)])
    loaded = store.load("noise")
    assert np.array_equal(loaded.images, images) and loaded.manifest == manifest
    assert [p.name for p in store.root.iterdir()] == ["noise"]  # no temporary directories left behind
    array = np.load(store.path("noise") / "images.npy")
    array[0, 0, 0, 0] ^= 1
    np.save(store.path("noise") / "images.npy", array)
    with pytest.raises(SourceError, match="images.npy no longer matches the sha256 in manifest.json; it was set aside"):
        store.load("noise")
    assert not store.exists("noise") and (store.root / ".noise.corrupt").is_dir()


def test_unknown_source_names_what_is_cached(tmp_path):
    with pytest.raises(SourceError, match="bench data import"):
        SourceStore(tmp_path).load("nothing")


def test_folder_import_of_ddpm_samples(tmp_path, data_root):
    manifest = import_folder(SourceStore(tmp_path), data_root / "ddpm-cifar10" / "FAKE", "ddpm-cifar10", "fake")
    assert manifest.count == 129
    assert manifest.encoding == {"files": {"JPEG q75 4:2:0": 129}}


def _write(folder: Path, name: str, image: Image.Image, **kwargs) -> Path:
    path = folder / name
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda f: _write(f, "rgba.png", Image.new("RGBA", (32, 32))), "rgba.png: colour mode RGBA"),
        (lambda f: _write(f, "gray.png", Image.new("L", (32, 32))), "gray.png: colour mode L"),
        (lambda f: _write(f, "palette.png", Image.new("P", (32, 32))), "palette.png: colour mode P"),
        (lambda f: _write(f, "big.png", Image.new("RGB", (64, 48))), "big.png: size 64x48, expected 32x32"),
        (lambda f: _write(f, "deep.png", Image.new("I;16", (32, 32))), "deep.png: colour mode I;16"),
        (lambda f: (f / "empty.jpg").write_bytes(b""), "empty.jpg: the file is empty"),
        (lambda f: (f / "notes.txt").write_text("hello"), "not images (notes.txt)"),
    ],
)
def test_bad_files_are_named_with_a_fix(tmp_path, data_root, make, message):
    folder = tmp_path / "images"
    folder.mkdir()
    for good in sorted((data_root / "ddpm-cifar10" / "FAKE").iterdir())[:3]:
        (folder / good.name).write_bytes(good.read_bytes())
    make(folder)
    store = SourceStore(tmp_path / "cache")
    with pytest.raises(SourceError, match=re.escape(message)):
        import_folder(store, folder, "mixed", "fake")
    assert store.names() == []  # nothing half-written
    manifest = import_folder(store, folder, "mixed", "fake", skip_bad=True)
    assert manifest.count == 3 and sum(manifest.skipped.values()) == 1


def test_truncated_jpeg_is_refused(tmp_path, data_root):
    folder = tmp_path / "images"
    folder.mkdir()
    good = (data_root / "ddpm-cifar10" / "FAKE" / "horse.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(SourceError, match="cut.jpg: not a readable image"):
        import_folder(SourceStore(tmp_path), folder, "cut", "fake")


def test_empty_folder_and_layout_without_images(tmp_path, data_root):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="contains no image files"):
        import_folder(SourceStore(tmp_path), tmp_path / "empty", "empty", "real")
    with pytest.raises(SourceError, match=r"sub-folders \(FAKE, REAL\): import each one"):
        import_folder(SourceStore(tmp_path), data_root / "ddpm-cifar10", "ddpm", "fake")


def test_npz_import_accepts_channels_last_and_rejects_bad_arrays(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "ok.npz", images=images)
    manifest = import_npz(SourceStore(tmp_path), tmp_path / "ok.npz", "arr", "fake")
    assert manifest.count == 6
    assert np.array_equal(SourceStore(tmp_path).load("arr").images, images.transpose(0, 3, 1, 2))
    np.savez(tmp_path / "float.npz", images=images.astype(np.float32))
    with pytest.raises(SourceError, match="must be uint8"):
        import_npz(SourceStore(tmp_path), tmp_path / "float.npz", "f", "fake")
    np.savez(tmp_path / "flat.npz", images=images.reshape(6, -1))
    with pytest.raises(SourceError, match=r"shape \(N, 3, H, W\)"):
        import_npz(SourceStore(tmp_path), tmp_path / "flat.npz", "g", "fake")
    with pytest.raises(SourceError, match="no array 'pixels'"):
        import_npz(SourceStore(tmp_path), tmp_path / "ok.npz", "h", "fake", key="pixels")


def test_cifake_from_an_extracted_folder(tmp_path, data_root):
    with zipfile.ZipFile(data_root / "cifake.zip") as archive:
        members = [n for n in archive.namelist() if n.startswith("test/FAKE/")][:20]
        archive.extractall(tmp_path / "cifake", members)
    assert locate_cifake(tmp_path, tmp_path / "downloads") == tmp_path / "cifake"
    manifest = import_cifake(SourceStore(tmp_path / "cache"), tmp_path / "cifake", "test", "fake")
    assert manifest.count == 20 and manifest.name == "cifake-sd14-test"


def test_offline_download_fails_at_once_with_directions(tmp_path):
    with pytest.raises(SourceError) as error:
        download_cifake(tmp_path / "cifake.zip", url="http://127.0.0.1:9/cifake.zip")
    assert "--data-root" in str(error.value) and "Kaggle" in str(error.value)
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_download_checks_what_arrives(tmp_path, data_root):
    small = tmp_path / "mirror.zip"
    with zipfile.ZipFile(data_root / "cifake.zip") as source, zipfile.ZipFile(small, "w") as out:
        for name in [n for n in source.namelist() if n.startswith("test/REAL/")][:5]:
            out.writestr(name, source.read(name))
    dest = download_cifake(tmp_path / "dl" / "cifake.zip", url=small.as_uri())
    assert zipfile.ZipFile(dest).namelist()[0].startswith("test/REAL/")
    html = tmp_path / "login.html"
    html.write_text("<html>please log in</html>")
    with pytest.raises(SourceError, match="not the CIFAKE archive"):
        download_cifake(tmp_path / "dl2" / "cifake.zip", url=html.as_uri())
    assert not (tmp_path / "dl2" / "cifake.zip").exists()


def test_decoding_shows_progress_when_asked(tmp_path, capsys):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "PNG")
    items = [(f"{i}.png", lambda: buffer.getvalue()) for i in range(3)]
    decoded = decode_all(items, 32, False, progress=True, description="cifake-real-test: decoding", total=3)
    assert decoded.images.shape == (3, 3, 32, 32)
    assert "cifake-real-test: decoding" in capsys.readouterr().err
    decode_all(items, 32, False)  # no bar unless asked
    assert capsys.readouterr().err == ""
