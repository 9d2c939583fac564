"""Prepare: import and generate a suite's sources, then draw its training and test data.

The only stage that creates data. A source is found in the cache by its name *and* by the identity of
what the suite says about it (importer, resolved input path, a hash of its file listing, label, split,
settings): a cached source whose identity differs is imported again, unless the copy its last import replaced
(kept as its previous copy) has that identity, which is then brought back. :func:`survey` says what
:func:`prepare` would do without doing it (for ``bench run --dry-run``).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from bench.audit import pixel_digests
from bench.encoding import Encoding, apply_encoding
from bench.files import write_atomic
from bench.importer import IMPORTERS, ImportContext, Importer, SourceSpec
from bench.sources import Manifest, Source, SourceError, SourceStore, content_hash
from bench.suite import Suite

log = logging.getLogger(__name__)


@dataclass
class Subset:
    """Images drawn from one or more sources, with what identifies them.

    The pixels are held in memory (``array``) or in a cache file (``path``, memory-mapped on first use), so
    that a subset sent to a worker process carries only its path.
    """

    sources: list[dict]
    sha256: str
    shape: tuple[int, ...]
    removed: int = 0  # exact repeats, or copies of training images, dropped before drawing
    array: np.ndarray | None = field(default=None, repr=False)
    path: str | None = None

    @classmethod
    def of(cls, images: np.ndarray, sources: list[dict], removed: int = 0) -> Subset:
        return cls(sources, content_hash(images), tuple(images.shape), removed, images)

    @cached_property
    def images(self) -> np.ndarray:
        if self.array is not None:
            return self.array
        images = np.load(self.path, mmap_mode="r")
        if content_hash(images) != self.sha256:
            raise SourceError(f"{self.path} does not hold the subset it is named after: delete it and run again")
        return images

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "images"}  # never pickle the cached pixels twice

    @property
    def count(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        """The side of the (square) images."""
        return self.shape[-1]

    def describe(self) -> dict:
        return {"sources": self.sources, "count": self.count, "sha256": self.sha256, "removed_duplicates": self.removed}

    def stored(self, folder: Path) -> Subset:
        """This subset backed by ``folder/<sha256>.npy`` (written once, atomically) instead of memory."""
        path = Path(folder) / f"{self.sha256}.npy"
        if not path.is_file():
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(self.images))
            write_atomic(path, buffer.getvalue())
        return Subset(self.sources, self.sha256, self.shape, self.removed, None, str(path))


@dataclass
class Prepared:
    """A suite's data: each training set's (real, fake) subsets, each test source's subset, and how many test
    images of each test source occur pixel for pixel in each training set."""

    train: dict[str, tuple[Subset, Subset]]
    test: dict[str, Subset]
    in_training: dict[tuple[str, str], int] = field(default_factory=dict)  # (test source, training set) -> count

    def stored(self, folder: Path) -> Prepared:
        """The same data with every subset backed by a file under ``folder`` (for worker processes)."""
        return Prepared({n: (r.stored(folder), f.stored(folder)) for n, (r, f) in self.train.items()},
                        {n: s.stored(folder) for n, s in self.test.items()}, self.in_training)


@dataclass(frozen=True)
class SourceStatus:
    """What preparing one source would do: ``cached``, ``import`` or ``generate`` (and why)."""

    name: str
    importer: str
    action: str
    reason: str = ""
    count: int | None = None  # images it holds, or will hold (None: not known before importing)


def part_of(manifest: Manifest) -> dict:
    """For a source that is one part of another (bench.parts): which source, which part, and every part's share
    and size, as records carry them; else nothing."""
    origin = manifest.origin
    if "parts" not in origin:
        return {}
    return {"part_of": {"source": origin["source"], "part": origin["part"], "seed": origin["seed"],
                        "parts": origin["parts"]}}


def _context(store: SourceStore, data_root: Path | None, device: str, progress: bool | None) -> ImportContext:
    return ImportContext(store, data_root, store.root.parent, device, progress)


def _cached_identity(store: SourceStore, name: str) -> str | None:
    try:
        return store.manifest(name).origin.get("identity") if store.exists(name) else None
    except SourceError:
        return None


# what preparing a source of each kind (bench.importer.SourceKind) does when the cache lacks it
ACTIONS = {"imported": "import", "generated": "generate", "cached": "missing"}


def survey(suite: Suite, store: SourceStore, data_root: Path | None) -> list[SourceStatus]:
    """What :func:`prepare` would do with each source ``suite`` uses; reads the cache, writes nothing."""
    context = _context(store, data_root, "cpu", False)
    statuses = []
    for name in suite.used_sources():
        spec = suite.sources[name]
        importer = IMPORTERS.get(spec.importer)
        action = ACTIONS[importer.makes]
        cached_count = store.manifest(name).count if store.exists(name) else None
        try:
            wanted, count = importer.identity(spec, context), importer.count(spec, context)
        except SourceError as exc:
            statuses.append(SourceStatus(name, spec.importer, action, str(exc)))
            continue
        if importer.makes == "cached":
            found = cached_count is not None
            statuses.append(SourceStatus(name, spec.importer, "cached" if found else action,
                                         "" if found else "not in the cache", cached_count))
        elif wanted is None:
            statuses.append(SourceStatus(name, spec.importer, action, "its input is not prepared yet", count))
        elif _cached_identity(store, name) == wanted:
            statuses.append(SourceStatus(name, spec.importer, "cached", count=cached_count))
        elif (previous := store.previous(name)) and previous.origin.get("identity") == wanted:
            statuses.append(SourceStatus(name, spec.importer, "cached", "the copy kept from before another input "
                                         "replaced it", previous.count))
        else:
            reason = "not in the cache" if cached_count is None else "the cached copy came from other input"
            statuses.append(SourceStatus(name, spec.importer, action, reason, count))
    counts = {s.name: s.count for s in statuses}
    return [replace(s, count=_input_count(suite.sources[s.name].inputs(), counts)) if s.count is None else s
            for s in statuses]


def _input_count(inputs: dict[str, tuple[str, str]], counts: dict[str, int | None]) -> int | None:
    """The image count of a source made from one other source (a corrupted copy, a part: at most as many), from
    that source's count; None otherwise."""
    return counts.get(next(iter(inputs.values()))[0]) if len(inputs) == 1 else None


class Preparer:
    """Brings a suite's sources into the cache under ``data_dir`` and draws its subsets."""

    def __init__(self, data_dir: Path, data_root: Path | None = None, device: str = "auto",
                 progress: bool | None = None, report: Callable[[str], None] | None = None) -> None:
        self.store = SourceStore(Path(data_dir))
        self.report = report or (lambda line: log.info("%s", line))  # what is imported or generated, and when done
        self.context = _context(self.store, Path(data_root) if data_root else None, device, progress)
        self._loaded: dict[str, Source] = {}  # each source is loaded and hash-checked once
        self._encoded: dict[tuple[str, str], tuple[np.ndarray, str]] = {}

    def source(self, name: str, specs: Mapping[str, SourceSpec]) -> Source:
        """The cached source ``name`` as ``specs[name]`` declares it, imported or generated first if needed."""
        if name in self._loaded:
            return self._loaded[name]
        spec = specs[name]
        for needed, _ in spec.inputs().values():  # e.g. a generator's training data, a perturbed source's input
            self.source(needed, specs)
        importer = IMPORTERS.get(spec.importer)
        wanted = importer.identity(spec, self.context)
        cached = _cached_identity(self.store, name)
        present = self.store.exists(name)
        # without its input (wanted None) a cached copy is used as it is
        if importer.makes != "cached" and (not present or (wanted is not None and cached != wanted)):
            previous = self.store.previous(name)
            if wanted is not None and previous and previous.origin.get("identity") == wanted:
                log.info("source %s: using the copy kept from before another input replaced it", name)
                self.store.bring_back(name)
                present = self.store.exists(name)  # False if the kept copy is damaged (it is then set aside)
                cached = wanted if present else None
            if not present or cached != wanted:
                if present:  # its input is here and differs
                    log.warning("source %s: the cached copy was made from other input (%s): importing it again",
                                name, self.store.manifest(name).origin.get("path", "another identity"))
                self._make(name, spec, importer)
        source = self.store.load(name)
        manifest = source.manifest
        origin = manifest.origin.get("importer")
        expected_origin = origin if importer.makes == "cached" else spec.importer
        if (origin, manifest.label, manifest.split) != (expected_origin, spec.label, spec.split):
            raise SourceError(
                f"cached source {name!r} ({origin}, {manifest.label}, split {manifest.split}) does not match the "
                f"suite ({spec.importer}, {spec.label}, split {spec.split}): delete {self.store.path(name)} "
                "or give the suite's source another name"
            )
        self._loaded[name] = source
        return source

    def _make(self, name: str, spec: SourceSpec, importer: Importer) -> None:
        """Import or generate the source ``name``, saying so in a line before and one after (beside the progress
        bars of importers that show one)."""
        count = importer.count(spec, self.context)
        expected = f", {count:,} images" if count is not None else ""
        self.report(f"source {name}: {ACTIONS[importer.makes]} ({spec.importer}{expected})")
        start = time.perf_counter()
        manifest = importer.load(name, spec, self.context)
        self.report(f"source {name}: {manifest.count:,} images in {time.perf_counter() - start:.0f} s")

    def encoded(self, source: Source, encoding: Encoding) -> tuple[np.ndarray, str]:
        """A source's pixels under the suite's encoding, and what was done to them (computed once)."""
        key = (source.manifest.sha256, encoding.describe())
        if key not in self._encoded:
            self._encoded[key] = apply_encoding(source.images, source.manifest.encoding, encoding)
        return self._encoded[key]

    def subset(self, suite: Suite, names: list[str], limit: int | None, exclude: frozenset = frozenset()) -> Subset:
        """Up to ``limit`` images drawn without replacement (seeded by the suite's data seed) from ``names``.

        Each source is first put through the suite's encoding. With several sources, the limit is shared
        equally among them (each gives at most what it has). With ``suite.deduplicate``, exact repeats are
        dropped first (keeping the first copy), and so is every image whose pixels occur in ``exclude``
        (the training images, for test data).
        """
        loaded = [self.source(n, suite.sources) for n in names]
        sizes = {s.manifest.shape for s in loaded}
        if len(sizes) > 1:
            raise SourceError(f"sources {', '.join(names)} have different image shapes ({sorted(sizes)}): "
                              "one training set or test source must hold images of one size")
        seen, parts, described, removed = set(exclude), [], [], 0
        rng = np.random.default_rng(suite.data_seed)
        for i, source in enumerate(loaded):
            images, encoded = self.encoded(source, suite.encoding)
            if suite.deduplicate:
                keep = []
                for j, digest in enumerate(pixel_digests(images)):
                    if digest not in seen:
                        seen.add(digest)
                        keep.append(j)
                removed += len(images) - len(keep)
                images = images[keep]
            quota = None if limit is None else limit // len(loaded) + (i < limit % len(loaded))
            if quota is not None and quota < len(images):
                images = images[np.sort(rng.choice(len(images), quota, replace=False))]
            parts.append(np.asarray(images))
            described.append({"name": source.name, "sha256": source.manifest.sha256, "count": source.manifest.count,
                              "encoding": source.manifest.encoding, "encoded": encoded, "drawn": len(images),
                              **part_of(source.manifest)})
        images = np.ascontiguousarray(np.concatenate(parts))
        return Subset.of(images, described, removed)

    def prepare(self, suite: Suite) -> Prepared:
        """Every source of ``suite`` in the cache, and its training and test subsets."""
        train = {t.name: (self.subset(suite, t.real, t.limit), self.subset(suite, t.fake, t.limit))
                 for t in suite.train}
        training_images: frozenset[bytes] = frozenset()
        if suite.deduplicate:
            names = sorted({n for t in suite.train for n in [*t.real, *t.fake]})
            training_images = frozenset(
                d for n in names for d in pixel_digests(self.encoded(self.source(n, suite.sources), suite.encoding)[0])
            )
        test = {name: self.subset(suite, [name], suite.test.limit, exclude=training_images)
                for name in [suite.test.real, *suite.test_fakes()]}
        digests = {name: set(pixel_digests(real.images)) | set(pixel_digests(fake.images))
                   for name, (real, fake) in train.items()}
        in_training = {(test_name, train_name): sum(d in seen for d in pixel_digests(subset.images))
                       for test_name, subset in test.items() for train_name, seen in digests.items()}
        return Prepared(train, test, in_training)
