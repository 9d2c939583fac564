"""The runner: plan a suite into cells, train what is missing, score, and write one record per cell.

Every cached thing has a content key: a checkpoint's key covers the detector, its arguments, the recipe,
the hashes of the exact training images and the seed; a cell's key covers its training job, the hashes of
the exact test images, the perturbation and the metric settings. A cell whose record exists is skipped,
and a training job whose cells are all recorded is not even loaded, so an interrupted run resumes.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.attribution import explain
from bench.audit import pixel_digests
from bench.checkpoints import Checkpoint, CheckpointStore
from bench.detector import DETECTORS, Detector, build_detector
from bench.encoding import Encoding, apply_encoding
from bench.files import file_sha256, write_atomic
from bench.generator import generate_source
from bench.importers import import_cifake, import_folder, import_npz, locate_cifake
from bench.leaderboard import write_leaderboard
from bench.metrics import evaluate, evasion_rate
from bench.perturbations import PERTURBATIONS
from bench.provenance import content_key, hardware, stamp
from bench.recipe import Recipe
from bench.sources import Source, SourceError, SourceStore, content_hash
from bench.suite import DetectorEntry, PerturbationEntry, SourceSpec, Suite
from bench.training import detection_scores, no_bars, pick_device, predict_logits, seed_everything, train_detector

log = logging.getLogger(__name__)

TRAINING_VERSION = 1  # bump when the training loop changes what a checkpoint contains
SCORING_VERSION = 1  # bump when scoring or the record format changes
SELECTION_RULE = "highest validation balanced accuracy, then lowest validation loss"


@dataclass(frozen=True)
class Subset:
    """Images drawn from one or more sources, with what identifies them."""

    images: np.ndarray
    sources: list[dict]
    sha256: str
    removed: int = 0  # exact repeats, or copies of training images, dropped before drawing

    @property
    def count(self) -> int:
        return len(self.images)

    def describe(self) -> dict:
        return {"sources": self.sources, "count": self.count, "sha256": self.sha256, "removed_duplicates": self.removed}

    @cached_property
    def digests(self) -> set[bytes]:
        return set(pixel_digests(self.images))

    def copies_in(self, other: Subset) -> int:
        """How many of these images occur pixel for pixel in ``other``."""
        return sum(d in other.digests for d in pixel_digests(self.images))


@dataclass
class Job:
    """One detector trained on one training set with one seed; candidates are its grid points."""

    entry: DetectorEntry
    train_name: str
    seed: int
    candidates: list[tuple[Recipe, str]]
    key: str
    classes: tuple[str, ...] = ()  # source attribution: "real", then the training fake sources
    cells: list[Cell] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    """One (job) x (test source, perturbation) measurement."""

    job: Job
    test_fake: str
    perturbation: PerturbationEntry
    key: str


@dataclass
class RunSummary:
    """What a run did."""

    computed: list[Path]
    skipped: list[Path]
    leaderboard: dict[str, Path]
    records: list[dict]


def source_attribution(classes: tuple[str, ...], test_fake: str, real: np.ndarray, fake: np.ndarray) -> dict:
    """Which class a source-attribution detector assigns to the real and the fake test images (counts)."""
    def counts(logits: np.ndarray) -> dict[str, int]:
        predicted = np.bincount(logits.argmax(1), minlength=len(classes))
        return {name: int(n) for name, n in zip(classes, predicted, strict=True)}

    return {"classes": list(classes), "predicted": {"real": counts(real), test_fake: counts(fake)}}


class Runner:
    """Runs suites against a data directory (cache); records and leaderboard go to ``results_dir``."""

    def __init__(
        self,
        data_dir: Path,
        results_dir: Path,
        data_root: Path | None = None,
        device: str = "auto",
        progress: bool | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.results_dir = Path(results_dir)
        self.data_root = Path(data_root) if data_root else None
        self.device = pick_device(device)
        self.progress = progress
        self.sources = SourceStore(self.data_dir)
        self.checkpoints = CheckpointStore(self.data_dir)
        self._loaded: dict[str, Source] = {}  # each source is loaded and hash-checked once per runner
        self._encoded: dict[tuple[str, str], tuple[np.ndarray, str]] = {}

    # ---- data -------------------------------------------------------------------------------
    def source(self, name: str, specs: Mapping[str, SourceSpec]) -> Source:
        """The cached source ``name`` as ``specs[name]`` declares it, imported or generated first if needed."""
        if name in self._loaded:
            return self._loaded[name]
        spec = specs[name]
        if spec.importer == "generator":
            self._generate(name, spec, specs)
        elif not self.sources.exists(name):
            self._import(name, spec)
        source = self.sources.load(name)
        manifest = source.manifest
        origin = manifest.origin.get("importer")
        expected_origin = origin if spec.importer == "cached" else spec.importer
        if (origin, manifest.label, manifest.split) != (expected_origin, spec.label, spec.split):
            raise SourceError(
                f"cached source {name!r} ({origin}, {manifest.label}, split {manifest.split}) does not match the "
                f"suite ({spec.importer}, {spec.label}, split {spec.split}): delete {self.sources.path(name)} "
                "or give the suite's source another name"
            )
        self._loaded[name] = source
        return source

    def _generate(self, name: str, spec: SourceSpec, specs: Mapping[str, SourceSpec]) -> None:
        """Train (if not cached) and sample the generator a source names; cached by content key."""
        train_source = self.source(spec.train_source, specs).name if spec.train_source else None
        generate_source(self.data_dir, spec.generator, spec.config, train_source, spec.count, spec.seed, name,
                        split=spec.split, progress=self.progress)

    def encoded(self, source: Source, encoding: Encoding) -> tuple[np.ndarray, str]:
        """A source's pixels under the suite's encoding, and what was done to them (computed once)."""
        key = (source.manifest.sha256, encoding.describe())
        if key not in self._encoded:
            self._encoded[key] = apply_encoding(source.images, source.manifest.encoding, encoding)
        return self._encoded[key]

    def _import(self, name: str, spec: SourceSpec) -> None:
        if spec.importer == "cached":
            self.sources.manifest(name)  # raises, saying how to make it
        if spec.importer == "cifake":
            location = locate_cifake(self.data_root, self.data_dir / "downloads")
            import_cifake(self.sources, location, spec.split, spec.label, name=name, skip_bad=spec.skip_bad)
            return
        if self.data_root is None and not Path(spec.path).is_absolute():
            raise SourceError(
                f"source {name!r} is read from {spec.path!r} relative to the data root: pass --data-root DIR "
                "(or set BENCH_DATA_ROOT)"
            )
        path = self.data_root / spec.path if self.data_root else Path(spec.path)
        if spec.importer == "folder":
            import_folder(self.sources, path, name, spec.label, spec.split, skip_bad=spec.skip_bad)
        else:
            import_npz(self.sources, path, name, spec.label, spec.split, key=spec.key)

    def subset(self, suite: Suite, names: list[str], limit: int | None, exclude: frozenset = frozenset()) -> Subset:
        """Up to ``limit`` images drawn without replacement (seeded by the suite's data seed) from ``names``.

        Each source is first put through the suite's encoding. With several sources, the limit is shared
        equally among them (each gives at most what it has). With ``suite.deduplicate``, exact repeats are
        dropped first (keeping the first copy), and so is every image whose pixels occur in ``exclude``
        (the training images, for test data).
        """
        loaded = [self.source(n, suite.sources) for n in names]
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
                              "encoding": source.manifest.encoding, "encoded": encoded, "drawn": len(images)})
        images = np.ascontiguousarray(np.concatenate(parts))
        return Subset(images, described, content_hash(images), removed)

    # ---- planning -----------------------------------------------------------------------------
    def plan(self, suite: Suite) -> tuple[list[Job], dict[str, tuple[Subset, Subset]], dict[str, Subset]]:
        """Jobs with their cells, the training data of each training set, and the test data."""
        train_data = {
            t.name: (self.subset(suite, t.real, t.limit), self.subset(suite, t.fake, t.limit)) for t in suite.train
        }
        training_images: frozenset[bytes] = frozenset()
        if suite.deduplicate:
            names = sorted({n for t in suite.train for n in [*t.real, *t.fake]})
            training_images = frozenset(
                d for n in names for d in pixel_digests(self.encoded(self.source(n, suite.sources), suite.encoding)[0])
            )
        test_data = {name: self.subset(suite, [name], suite.test.limit, exclude=training_images)
                     for name in [suite.test.real, *suite.test_fakes()]}
        jobs = []
        for train, entry, seed in itertools.product(suite.train, suite.detectors, suite.seeds):
            real, fake = train_data[train.name]
            pretrained = file_sha256(Path(entry.pretrained)) if entry.pretrained else None
            classes = ("real", *train.fake) if train.attribute_sources else ()
            candidates = []
            for recipe in self._grid(suite, entry):
                key = content_key({
                    "detector": entry.name, "kwargs": entry.kwargs, "pretrained": pretrained,
                    "recipe": recipe.model_dump(mode="json"), "train_real": real.sha256, "train_fake": fake.sha256,
                    "seed": seed, "version": TRAINING_VERSION, **({"classes": classes} if classes else {}),
                })
                candidates.append((recipe, key))
            job_key = content_key({"candidates": [k for _, k in candidates], "selection": SELECTION_RULE})
            job = Job(entry, train.name, seed, candidates, job_key, classes)
            for fake_name, perturbation in itertools.product(suite.test_fakes(), suite.perturbations):
                measured = {
                    "job": job_key, "test_real": test_data[suite.test.real].sha256,
                    "test_fake": test_data[fake_name].sha256, "perturbation": perturbation.model_dump(),
                    "bootstrap": suite.bootstrap, "ci_level": suite.ci_level, "version": SCORING_VERSION,
                }
                if self._explains(suite, perturbation):
                    measured["attribution"] = suite.attribution.model_dump()
                cell_key = content_key(measured)
                job.cells.append(Cell(job, fake_name, perturbation, cell_key))
            jobs.append(job)
        return jobs, train_data, test_data

    @staticmethod
    def _explains(suite: Suite, perturbation: PerturbationEntry) -> bool:
        """Whether a cell also carries attributions: clean cells of suites with an attribution section."""
        return suite.attribution is not None and perturbation.name == "clean"

    @staticmethod
    def _grid(suite: Suite, entry: DetectorEntry) -> list[Recipe]:
        base = DETECTORS.get(entry.name).recipe.updated(**suite.recipe, **entry.recipe)
        fields, values = list(entry.grid), list(entry.grid.values())
        return [base.updated(**dict(zip(fields, point, strict=True))) for point in itertools.product(*values)]

    # ---- running ------------------------------------------------------------------------------
    def record_path(self, cell: Cell) -> Path:
        return self.results_dir / "records" / f"{cell.key}.json"

    def run(self, suite: Suite) -> RunSummary:
        """Run every cell of ``suite`` that has no record yet, then render its leaderboard."""
        jobs, train_data, test_data = self.plan(suite)
        computed, skipped = [], []
        pending_jobs = [j for j in jobs if any(not self._has_record(c) for c in j.cells)]
        for job in jobs:
            skipped += [self.record_path(c) for c in job.cells if self._has_record(c)]
        bar = tqdm(pending_jobs, desc=suite.name, unit="job", disable=no_bars(self.progress))
        for job in bar:
            bar.set_postfix(detector=job.entry.name, train=job.train_name, seed=job.seed)
            detector, training = self._trained(job, *train_data[job.train_name])
            logits_cache: dict[tuple[str, str], np.ndarray] = {}
            for cell in job.cells:
                if self._has_record(cell):
                    continue
                record = self._score(suite, cell, detector, training, train_data, test_data, logits_cache)
                path = self.record_path(cell)
                write_atomic(path, json.dumps(record, indent=2, sort_keys=True).encode())
                computed.append(path)
        records = [json.loads(self.record_path(c).read_text()) for j in jobs for c in j.cells]
        leaderboard = write_leaderboard(records, self.results_dir, suite.name, suite.description)
        return RunSummary(computed, skipped, leaderboard, records)

    def _has_record(self, cell: Cell) -> bool:
        path = self.record_path(cell)
        if not path.is_file():
            return False
        try:
            return json.loads(path.read_text()).get("key") == cell.key
        except (json.JSONDecodeError, OSError):
            log.warning("record %s is unreadable: it will be recomputed", path)
            return False

    def _trained(self, job: Job, real: Subset, fake: Subset) -> tuple[Detector, dict]:
        """The job's detector with the weights of its best candidate on validation (trained if not cached)."""
        results: list[tuple[Recipe, Checkpoint]] = []
        for recipe, key in job.candidates:
            checkpoint = self.checkpoints.get(key)
            if checkpoint is None:
                checkpoint = self._train(job, recipe, key, real, fake)
            results.append((recipe, checkpoint))
        best_recipe, best = max(
            results, key=lambda rc: (rc[1].info["val"]["balanced_accuracy"], -rc[1].info["val"]["loss"])
        )
        detector = build_detector(job.entry.name, classes=job.classes, **job.entry.kwargs)
        detector.model.load_state_dict(best.state_dict())
        training = {
            "checkpoint": best.key,
            "checkpoint_sha256": best.info["sha256"],
            "recipe": best_recipe.model_dump(mode="json"),
            "threshold": best.info["threshold"],
            "val": best.info["val"],
            "selected_epoch": best.info["selected_epoch"],
            "train_seconds": best.info["seconds"],
            "trained_on": best.info["hardware"],
            "n_train": best.info["n_train"],
            "n_val": best.info["n_val"],
            "selection": SELECTION_RULE,
            "grid": [
                {"recipe": {k: r.model_dump(mode="json")[k] for k in job.entry.grid}, "checkpoint": c.key,
                 "val_balanced_accuracy": c.info["val"]["balanced_accuracy"], "val_loss": c.info["val"]["loss"]}
                for r, c in results
            ] if job.entry.grid else [],
        }
        return detector, training

    def _train(self, job: Job, recipe: Recipe, key: str, real: Subset, fake: Subset) -> Checkpoint:
        seed_everything(job.seed)  # the initial weights are part of what the seed fixes
        detector = build_detector(job.entry.name, pretrained=job.entry.pretrained, classes=job.classes,
                                  **job.entry.kwargs)
        images = np.concatenate([real.images, fake.images])
        if job.classes:  # class k is the k-th fake source, in the order the subset drew them
            fakes = np.concatenate([np.full(s["drawn"], k, int) for k, s in enumerate(fake.sources, start=1)])
        else:
            fakes = np.ones(fake.count, int)
        labels = np.r_[np.zeros(real.count, int), fakes]
        result = train_detector(
            detector, images, labels, recipe, job.seed, self.device, self.progress,
            description=f"{job.entry.name} on {job.train_name}",
        )
        info = {
            "detector": job.entry.name, "kwargs": job.entry.kwargs, "recipe": recipe.model_dump(mode="json"),
            "seed": job.seed, "threshold": result.threshold, "val": result.val,
            "selected_epoch": result.selected_epoch, "history": result.history, "seconds": result.seconds,
            "n_train": result.n_train, "n_val": result.n_val,
            "train_real": real.sha256, "train_fake": fake.sha256,
            "hardware": hardware(str(self.device)),
        }
        return self.checkpoints.put(key, result.state, info)

    def _score(
        self,
        suite: Suite,
        cell: Cell,
        detector: Detector,
        training: dict,
        train_data: dict[str, tuple[Subset, Subset]],
        test_data: dict[str, Subset],
        logits_cache: dict[tuple[str, str], np.ndarray],
    ) -> dict:
        real, fake = test_data[suite.test.real], test_data[cell.test_fake]
        outputs = [
            self._logits(detector, subset, label, cell.perturbation, logits_cache)
            for subset, label in ((real, 0), (fake, 1))
        ]
        scores = [detection_scores(o) for o in outputs]
        labels = np.r_[np.zeros(real.count, int), np.ones(fake.count, int)]
        result = evaluate(labels, np.concatenate(scores), training["threshold"], suite.bootstrap, suite.ci_level)
        if cell.perturbation.name != "clean":
            clean = detection_scores(self._logits(detector, fake, 1, PerturbationEntry(name="clean"), logits_cache))
            result["metrics"]["evasion_rate"] = evasion_rate(clean, scores[1], training["threshold"], suite.ci_level)
        if detector.classes:
            result["source_attribution"] = source_attribution(detector.classes, cell.test_fake, *outputs)
        train_real, train_fake = train_data[cell.job.train_name]
        attribution = {"attribution": self._attribute(suite, cell, detector, training, real, fake)} \
            if self._explains(suite, cell.perturbation) else {}
        return {
            "key": cell.key,
            "suite": suite.name,
            "suite_config": suite.model_dump(mode="json"),  # with command-line overrides: enough to re-run it
            "detector": cell.job.entry.name,
            "detector_kwargs": cell.job.entry.kwargs,
            "train": {"name": cell.job.train_name,
                      "real": train_real.describe(),
                      "fake": train_fake.describe()},
            "test": {"name": cell.test_fake,
                     "real": real.describe(),
                     "fake": fake.describe()},
            "perturbation": cell.perturbation.model_dump() | {"label": cell.perturbation.label},
            "seed": cell.job.seed,
            "data_seed": suite.data_seed,
            "encoding": suite.encoding.describe(),  # applied to every source, real and fake alike
            "test_images_in_training": {  # exact pixel copies; `bench data audit` also finds near copies
                "real": real.copies_in(train_real) + real.copies_in(train_fake),
                "fake": fake.copies_in(train_real) + fake.copies_in(train_fake),
            },
            "training": training,
            **result,
            **attribution,
            "provenance": stamp(cell.job.seed, str(self.device)),
        }

    def _attribute(self, suite: Suite, cell: Cell, detector: Detector, training: dict, real: Subset,
                   fake: Subset) -> dict:
        """Attribution scores of the first test images of each class; the picture goes to figures/."""
        settings = suite.attribution
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cell.job.seed)  # the weights training started from: the randomisation reference
            randomised = build_detector(cell.job.entry.name, classes=cell.job.classes, **cell.job.entry.kwargs)
        section, picture = explain(
            detector, randomised, real.images[: settings.images], fake.images[: settings.images],
            training["threshold"], settings, self.device, suite.bootstrap, suite.ci_level, self.progress,
        )
        figure = Path("figures") / f"{cell.key}.png"
        write_atomic(self.results_dir / figure, picture)
        return section | {"figure": figure.as_posix()}

    def _logits(
        self,
        detector: Detector,
        subset: Subset,
        label: int,
        perturbation: PerturbationEntry,
        cache: dict[tuple[str, str], np.ndarray],
    ) -> np.ndarray:
        """Logits of a perturbed test subset, computed once per job (reals are shared by all test pairs);
        per class for a source-attribution detector."""
        cache_key = (subset.sha256, perturbation.label)
        if cache_key not in cache:
            function = PERTURBATIONS.get(perturbation.name)
            seed = int(content_key([subset.sha256, perturbation.model_dump()])[:8], 16)
            generator = torch.Generator(device=self.device).manual_seed(seed)
            chunks = []
            starts = range(0, subset.count, 1024)
            slow = perturbation.name != "clean" and len(starts) > 1
            for start in tqdm(starts, desc=perturbation.label, unit="batch", leave=False,
                              disable=not slow or no_bars(self.progress)):
                batch = torch.tensor(subset.images[start : start + 1024], device=self.device).float() / 255
                labels = torch.full((len(batch),), label, device=self.device)
                perturbed = function(batch, labels, detector, generator, **perturbation.params)
                chunks.append(predict_logits(detector, (perturbed.clamp(0, 1) * 255).round().to(torch.uint8),
                                             self.device, per_class=bool(detector.classes)))
            cache[cache_key] = np.concatenate(chunks)
        return cache[cache_key]
