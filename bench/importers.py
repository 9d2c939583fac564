"""The built-in importers: CIFAKE (Kaggle zip or extracted folder), image folders, .npz arrays, sources already in
the cache, images sampled from a generator plugin, corrupted copies of other sources, and disjoint parts of other
sources; each with its config model (the suite keys it takes, see :mod:`bench.importer`).

Importing reads the files once through :mod:`bench.decoding` and stores the images lossless as uint8 arrays with
the encoding of their files. Each importer's identity (what a cached source must match to be reused) covers its
resolved input (path and a hash of the file listing) and its settings.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator, model_validator

from bench.decoding import IMAGE_SUFFIXES, ImageFileError, decode_all, printable_name, read_npz_array
from bench.files import file_sha256
from bench.generator import GENERATORS, GeneratorError, generate_source, plan_generation, resolve_config
from bench.importer import ImportContext, PathSpec, SourceSpec, input_identity, register_importer
from bench.parts import part_sizes, split_parts
from bench.perturbations import PERTURBATIONS, PerturbationEntry
from bench.provenance import content_key
from bench.sources import Label, Manifest, SourceError, SourceStore, validate_images

CIFAKE_URL = (
    "https://www.kaggle.com/api/v1/datasets/download/birdy654/cifake-real-and-ai-generated-synthetic-images"
)
CIFAKE_CLASS_DIRS: dict[Label, str] = {"real": "REAL", "fake": "FAKE"}
CIFAKE_SOURCE_NAMES: dict[Label, str] = {"real": "cifake-real", "fake": "cifake-sd14"}
SUITE_SKIP = "set `skip_bad: true` on the source in the suite"
PART = "part"  # the importer of the sources that a suite's `partition:` declares


def cifake_source_name(label: Label, split: str) -> str:
    """The cached name of a CIFAKE split, e.g. ``cifake-sd14-train``."""
    return f"{CIFAKE_SOURCE_NAMES[label]}-{split}"


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
    progress: bool | None = False,
) -> Manifest:
    """Import one CIFAKE split and class (``train``/``test`` x ``real``/``fake``) from the zip or folder, with a
    progress bar of the files decoded (``progress`` None: on a terminal only)."""
    if split not in ("train", "test"):
        raise SourceError(f"CIFAKE split must be 'train' or 'test', got {split!r}")
    prefix = f"{split}/{CIFAKE_CLASS_DIRS[label]}/"
    name = name or cifake_source_name(label, split)
    if location.is_file():
        members = sorted(member for member, *_ in zip_listing(location) if member.startswith(prefix))
        _require_members(members, location, prefix)
        with zipfile.ZipFile(location) as archive:
            decoded = decode_all(((m, lambda m=m: archive.read(m)) for m in members), 32, skip_bad, progress,
                                 f"{name}: decoding", len(members))
    else:
        folder = location / prefix
        paths = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        _require_members(paths, location, prefix)
        decoded = decode_all(((f"{prefix}{p.name}", p.read_bytes) for p in paths), 32, skip_bad, progress,
                             f"{name}: decoding", len(paths))
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


def zip_listing(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, CRC) of every file in the zip archive ``path``, in archive order: its central directory (CIFAKE's
    has 120,000 entries) is read once per version of the file (resolved path, size, modification time)."""
    stat = Path(path).stat()
    return _zip_listing(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@cache
def _zip_listing(path: str, size: int, modified: int) -> tuple[tuple[str, int, int], ...]:
    with zipfile.ZipFile(path) as archive:
        return tuple((i.filename, i.file_size, i.CRC) for i in archive.infolist() if not i.is_dir())


def cifake_identity(location: Path, split: str, label: Label, skip_bad: bool) -> str:
    """Identity of one CIFAKE part: the archive or folder, and the names, sizes (and CRCs) of its members."""
    prefix = f"{split}/{CIFAKE_CLASS_DIRS[label]}/"
    if location.is_file():
        listing = [member for member in zip_listing(location) if member[0].startswith(prefix)]
    else:
        folder = location / prefix
        listing = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return input_identity("cifake", location, listing, split=split, label=label, skip_bad=skip_bad)


def folder_identity(folder: Path, label: Label, split: str, skip_bad: bool) -> str:
    """Identity of a folder source: the folder and the names and sizes of the files in it."""
    listing = sorted((os.fsencode(p.name).hex(), p.stat().st_size) for p in Path(folder).iterdir() if p.is_file())
    return input_identity("folder", folder, listing, label=label, split=split, skip_bad=skip_bad)


def npz_identity(path: Path, key: str, label: Label, split: str) -> str:
    """Identity of an .npz source: the file's sha256 and the array's name."""
    return input_identity("npz", path, [file_sha256(path)], key=key, label=label, split=split)


# ---- the importers and their config models --------------------------------------------------------------------


def _for_suite(name: str, where: str, load: Callable[[], Manifest]) -> Manifest:
    """Run a suite source's import: its errors name the source and its input, and skip with the suite's key."""
    try:
        return load()
    except ImageFileError as exc:
        raise SourceError(f"source {name} ({where}): {exc.explain(SUITE_SKIP)}") from exc
    except SourceError as exc:
        raise SourceError(f"source {name} ({where}): {exc}") from exc


class CifakeSource(SourceSpec):
    """A part of CIFAKE: its ``split`` and ``label`` choose which."""

    skip_bad: bool = False
    unread: ClassVar[frozenset[str]] = frozenset({"tags", "skip_bad"})


@register_importer("cifake")
class CifakeImporter:
    """CIFAKE (Bird & Lotfi 2023) from cifake.zip or its extracted folder under the data root, else Kaggle."""

    config = CifakeSource
    makes = "imported"

    def identity(self, spec: CifakeSource, context: ImportContext) -> str | None:
        location = find_cifake(context.data_root, context.data_dir / "downloads")
        return None if location is None else cifake_identity(location, spec.split, spec.label, spec.skip_bad)

    def load(self, name: str, spec: CifakeSource, context: ImportContext) -> Manifest:
        location = locate_cifake(context.data_root, context.data_dir / "downloads")
        return _for_suite(name, f"CIFAKE {location}", lambda: import_cifake(
            context.store, location, spec.split, spec.label, name=name, skip_bad=spec.skip_bad,
            progress=context.progress))

    def count(self, spec: CifakeSource, context: ImportContext) -> int | None:
        location = find_cifake(context.data_root, context.data_dir / "downloads")
        if location is None:
            return None
        prefix = f"{spec.split}/{CIFAKE_CLASS_DIRS[spec.label]}/"
        if location.is_file():
            return sum(member.startswith(prefix) for member, *_ in zip_listing(location))
        folder = location / prefix
        return sum(p.is_file() for p in folder.iterdir()) if folder.is_dir() else None


class FolderSource(PathSpec):
    """Every image file directly inside the folder ``path`` (under the data root)."""

    skip_bad: bool = False
    unread: ClassVar[frozenset[str]] = frozenset({"tags", "skip_bad"})


@register_importer("folder")
class FolderImporter:
    """Every image file directly inside a folder (``path:`` under the data root)."""

    config = FolderSource
    makes = "imported"

    def identity(self, spec: FolderSource, context: ImportContext) -> str | None:
        folder = context.input_path(spec.path)
        return folder_identity(folder, spec.label, spec.split, spec.skip_bad) if folder.is_dir() else None

    def load(self, name: str, spec: FolderSource, context: ImportContext) -> Manifest:
        folder = context.input_path(spec.path)
        root = None if Path(spec.path).is_absolute() else context.data_root  # links may not leave the data root
        return _for_suite(name, f"folder {folder}", lambda: import_folder(
            context.store, folder, name, spec.label, spec.split, skip_bad=spec.skip_bad, root=root))

    def count(self, spec: FolderSource, context: ImportContext) -> int | None:
        folder = context.input_path(spec.path)
        if not folder.is_dir():
            return None
        return sum(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


class NpzSource(PathSpec):
    """A uint8 image array in the .npz file ``path`` (under the data root), stored under ``key``."""

    key: str = Field("images", description="array name inside the .npz file")


@register_importer("npz")
class NpzImporter:
    """A uint8 image array in an .npz file (``path:`` under the data root, ``key:`` the array's name)."""

    config = NpzSource
    makes = "imported"

    def identity(self, spec: NpzSource, context: ImportContext) -> str | None:
        path = context.input_path(spec.path)
        return npz_identity(path, spec.key, spec.label, spec.split) if path.is_file() else None

    def load(self, name: str, spec: NpzSource, context: ImportContext) -> Manifest:
        return import_npz(context.store, context.input_path(spec.path), name, spec.label, spec.split, key=spec.key)

    def count(self, spec: NpzSource, context: ImportContext) -> int | None:
        return None  # known once imported


class CachedSource(SourceSpec):
    """A source already in the cache under the declared name."""

    def reads(self, name: str) -> tuple[tuple, str]:
        return ("cached", name), f"cached source {name!r}"


@register_importer("cached")
class CachedImporter:
    """A source already in the cache, e.g. made by `bench data audit --deduplicate`."""

    config = CachedSource
    makes = "cached"

    def identity(self, spec: CachedSource, context: ImportContext) -> str | None:
        return None

    def load(self, name: str, spec: CachedSource, context: ImportContext) -> Manifest:
        return context.store.manifest(name)  # raises, saying how to make it

    def count(self, spec: CachedSource, context: ImportContext) -> int | None:
        return None  # a cached source's manifest says it


class GeneratedSource(SourceSpec):
    """``count`` images sampled with ``seed`` from the generator plugin ``generator``, trained by the harness on the
    declared real source ``train_source`` unless its ``config`` names pretrained weights."""

    generator: str = Field(description="generator plugin (`bench list generators`)")
    config: dict[str, Any] = Field({}, description="generator settings, e.g. {epochs: 5}")
    train_source: str | None = Field(None, description="declared real source the generator is trained on")
    count: int = Field(ge=1, description="images to sample")
    seed: int = Field(0, description="seed of the generator's training and sampling")
    determined_by_settings: ClassVar[bool] = True

    @field_validator("generator")
    @classmethod
    def _known(cls, name: str) -> str:
        return GENERATORS.validate(name)

    @model_validator(mode="after")
    def _generator(self) -> GeneratedSource:
        try:
            resolve_config(GENERATORS.get(self.generator), self.config)
        except (GeneratorError, KeyError) as exc:
            raise ValueError(f"config: {exc}") from None
        if self.label != "fake":
            raise ValueError("a generated source is labelled 'fake'")
        return self

    def inputs(self) -> dict[str, tuple[str, Label]]:
        return {"train_source": (self.train_source, "real")} if self.train_source else {}


@register_importer("generator")
class GeneratorImporter:
    """Images sampled from a generator plugin (trained by the harness on ``train_source`` unless pretrained)."""

    config = GeneratedSource
    makes = "generated"

    def identity(self, spec: GeneratedSource, context: ImportContext) -> str | None:
        if spec.train_source and not context.store.exists(spec.train_source):
            return None
        return plan_generation(context.data_dir, spec.generator, spec.config, spec.train_source, spec.count,
                               spec.seed, spec.split).source_key

    def load(self, name: str, spec: GeneratedSource, context: ImportContext) -> Manifest:
        return generate_source(context.data_dir, spec.generator, spec.config, spec.train_source, spec.count,
                               spec.seed, name, split=spec.split, progress=context.progress, device=context.device)

    def count(self, spec: GeneratedSource, context: ImportContext) -> int | None:
        return spec.count


class PerturbedSource(SourceSpec):
    """The declared source ``source`` with a corruption applied to every image."""

    source: str = Field(description="declared source whose images are perturbed")
    perturbation: dict[str, Any] = Field(
        description="the corruption applied to every image of 'source', e.g. {name: blur, sigma: 1}")

    @model_validator(mode="after")
    def _corruption(self) -> PerturbedSource:
        if self.entry.spec.needs_gradients:
            raise ValueError(f"perturbation {self.entry.label} follows a detector's gradients; a perturbed source "
                             f"takes a corruption ({', '.join(PERTURBATIONS.names())} without the attacks)")
        return self

    @property
    def entry(self) -> PerturbationEntry:
        """The perturbation, validated."""
        return PerturbationEntry.model_validate(self.perturbation)

    def inputs(self) -> dict[str, tuple[str, Label]]:
        return {"source": (self.source, self.label)}


@register_importer("perturbed")
class PerturbedImporter:
    """Another declared source with a corruption applied to every image (e.g. a blur control for a generator)."""

    config = PerturbedSource
    makes = "imported"

    def identity(self, spec: PerturbedSource, context: ImportContext) -> str | None:
        if not context.store.exists(spec.source):
            return None
        return content_key({"importer": "perturbed", "source": context.store.manifest(spec.source).sha256,
                            "perturbation": spec.entry.model_dump(), "label": spec.label, "split": spec.split})

    def load(self, name: str, spec: PerturbedSource, context: ImportContext) -> Manifest:
        import torch  # only when a source is perturbed: listing and validating importers need no torch

        entry, source = spec.entry, context.store.load(spec.source)
        identity = self.identity(spec, context)
        generator = torch.Generator().manual_seed(int(identity[:8], 16))
        parts = []
        for start in range(0, source.manifest.count, 1024):
            batch = torch.from_numpy(np.array(source.images[start : start + 1024])).float() / 255
            labels = torch.full((len(batch),), int(spec.label == "fake"))
            perturbed = entry.spec(batch, labels, None, generator, **entry.params)
            parts.append((perturbed.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        origin = {"importer": "perturbed", "source": {"name": source.name, "sha256": source.manifest.sha256},
                  "perturbation": entry.model_dump() | {"label": entry.label}, "identity": identity}
        encoding = {"format": "raw", "lossless": True, "files": {f"{entry.label} of {source.name}": len(source.images)}}
        files = [f"{entry.label}({file})" for file in source.files]
        return context.store.save(name, np.concatenate(parts), spec.label, spec.split, origin, encoding, files)

    def count(self, spec: PerturbedSource, context: ImportContext) -> int | None:
        return context.store.manifest(spec.source).count if context.store.exists(spec.source) else None


class PartSource(SourceSpec):
    """One of the disjoint, seeded ``parts`` of the declared source ``source`` (each part's share), the one named
    ``part``; ``seed`` draws the split (:mod:`bench.parts`)."""

    source: str = Field(description="declared source that is split into parts")
    parts: dict[str, float] = Field(description="the share of 'source' in each part, e.g. {train: 0.5, test: 0.5}")
    part: str = Field(description="the part of 'source' this source holds")
    seed: int = Field(0, description="seed of the split")

    @model_validator(mode="after")
    def _shares(self) -> PartSource:
        if self.part not in self.parts:
            raise ValueError(f"part {self.part!r} is not one of the parts ({', '.join(self.parts)})")
        bad = [part for part, share in self.parts.items() if not 0 < share <= 1]
        if bad:
            raise ValueError(f"parts: the share of {bad[0]!r} is {self.parts[bad[0]]}; give a share in (0, 1]")
        if sum(self.parts.values()) > 1 + 1e-9:
            raise ValueError(f"parts: the shares add up to {sum(self.parts.values()):g}; they may add up to 1 at most")
        return self

    def inputs(self) -> dict[str, tuple[str, Label]]:
        return {"source": (self.source, self.label)}

    @staticmethod
    def declaration(source: str, spec: SourceSpec, parts: dict[str, float], part: str, seed: int) -> dict[str, Any]:
        """How a suite's ``partition:`` declares part ``part`` of the declared source ``source`` (``spec``): its
        label and tags plus ``part: <part>``, the part's name as its split."""
        return {"importer": PART, "source": source, "parts": dict(parts), "part": part, "seed": seed,
                "label": spec.label, "split": part, "tags": spec.tags | {"part": part}}


@register_importer(PART)
class PartImporter:
    """One of the disjoint, seeded parts of another declared source (``source``, ``parts``, ``part``, ``seed``)."""

    config = PartSource
    makes = "imported"

    def identity(self, spec: PartSource, context: ImportContext) -> str | None:
        if not context.store.exists(spec.source):
            return None
        return content_key({"importer": "part", "source": context.store.manifest(spec.source).sha256,
                            "parts": spec.parts, "part": spec.part, "seed": spec.seed, "label": spec.label,
                            "split": spec.split})

    def load(self, name: str, spec: PartSource, context: ImportContext) -> Manifest:
        source = context.store.load(spec.source)
        indices = split_parts(np.asarray(source.images), spec.parts, spec.seed)
        chosen = indices[spec.part]
        if not len(chosen):
            raise SourceError(f"source {name}: part {spec.part!r} of {spec.source} ({source.manifest.count} images) "
                              "holds no image: give it a larger share")
        origin = {
            "importer": "part",
            "source": {"name": source.name, "sha256": source.manifest.sha256, "count": source.manifest.count},
            "parts": {part: {"share": spec.parts[part], "count": len(found)} for part, found in indices.items()},
            "part": spec.part,
            "seed": spec.seed,
            "identity": self.identity(spec, context),
        }
        return context.store.save(name, np.ascontiguousarray(source.images[chosen]), spec.label, spec.split, origin,
                                  source.manifest.encoding, [source.files[i] for i in chosen])

    def count(self, spec: PartSource, context: ImportContext) -> int | None:
        if not context.store.exists(spec.source):
            return None
        return part_sizes(context.store.manifest(spec.source).count, spec.parts)[spec.part]
