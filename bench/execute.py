"""Execute: train a job's detector (or load its cached checkpoint) and score its cells, returning records.

:func:`run_job` is the unit of work; it writes only content-keyed checkpoints to the cache and returns
everything else (records, per-image scores, attribution pictures) to the driver, which alone writes
results (:mod:`bench.publish`). Executors (:mod:`bench.executors`) decide where jobs run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm.auto import tqdm

from bench.attribution import AttributionSettings, explain
from bench.checkpoints import Checkpoint, CheckpointStore
from bench.detector import build_detector
from bench.metrics import choose_threshold, evaluate, evasion_rate, point_metrics
from bench.model import DetectorModel, detection_scores
from bench.perturbations import PERTURBATIONS, PerturbationEntry, needs_gradients
from bench.plan import SELECTION_RULE, CellPlan, JobPlan
from bench.prepare import Prepared, Subset
from bench.provenance import content_key, hardware, stamp
from bench.recipe import Recipe
from bench.records import (
    SCHEMA_VERSION,
    Attribution,
    Bootstrap,
    GridCandidate,
    InputAdaptation,
    Record,
    ScoresFile,
    SourceAttribution,
    Training,
    Weights,
    validation_problems,
)
from bench.sources import content_hash
from bench.suite import FixedThreshold, Suite
from bench.training import fit, no_bars, pick_device, seed_everything, validation_split
from bench.weights import WeightsError, load_weights

HEADLINE = "roc_auc"  # the metric a job's log line shows


@dataclass(frozen=True)
class Settings:
    """Where and how a worker runs jobs."""

    data_dir: Path
    device: str = "auto"
    progress: bool | None = None
    threads: int | None = None  # torch CPU threads per job (None: torch's default)
    git: dict | None = None  # the driver's commit, read when the run started (None: read it here)


class WorkerSuite(BaseModel):
    """What a worker needs of a suite to train and score its jobs (workers never receive the suite)."""

    model_config = ConfigDict(frozen=True)

    name: str
    suite_config: dict[str, Any]  # the suite with command-line overrides, as records keep it to re-run it
    test_real: str  # the real test source every cell scores
    input_size: Literal["resize", "center-crop"]  # how images of another size reach a detector
    encoding: str  # how every source was encoded, real and fake alike, in words
    data_seed: int
    bootstrap: int
    ci_level: float
    attribution: AttributionSettings | None

    @classmethod
    def of(cls, suite: Suite) -> WorkerSuite:
        return cls(name=suite.name, suite_config=suite.model_dump(mode="json"), test_real=suite.test.real,
                   input_size=suite.input_size, encoding=suite.encoding.describe(), data_seed=suite.data_seed,
                   bootstrap=suite.bootstrap, ci_level=suite.ci_level, attribution=suite.attribution)


@dataclass
class CellResult:
    """A scored cell: its record, the per-image scores (reals then fakes) and its attribution picture."""

    record: Record
    scores: np.ndarray | None  # None: the cell does not apply to the detector
    figure: bytes | None = None


@dataclass
class JobResult:
    """What a job returns to the driver."""

    job: str
    label: str
    cells: list[CellResult] = field(default_factory=list)
    trained: int = 0  # candidates trained (not found in the cache)
    seconds: float = 0.0

    def headline(self) -> str:
        """e.g. ``AUC 0.912-0.987 over 3 cells``."""
        values = [c.record.metrics[HEADLINE].value for c in self.cells if HEADLINE in c.record.metrics]
        if not values:
            return "no cells"
        return f"AUC {min(values):.3f}-{max(values):.3f} over {len(values)} cells"


def run_job(suite: WorkerSuite, job: JobPlan, data: Prepared, settings: Settings) -> JobResult:
    """Train (or load) ``job``'s detector and score its cells on ``data``."""
    start = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = pick_device(settings.device)
    store = CheckpointStore(settings.data_dir)
    real, fake = data.train[job.train_name]
    weights, trained = None, 0
    if job.entry.evaluate_only:
        with _recording(job):
            detector, training, weights = _evaluate_only(suite, job, real, fake, device)
    else:
        detector = build_detector(job.entry.name, classes=job.classes, adapt=suite.input_size, **job.entry.kwargs)
        fits = detector.state() if detector.differentiable else None  # an estimator's arrays take shape in its fit
        results: list[tuple[Recipe, Checkpoint]] = []
        for candidate in job.candidates:
            checkpoint = store.get(candidate.key, fits=fits)
            if checkpoint is None:
                checkpoint = _train(suite, job, candidate.recipe, candidate.key, real, fake, store, device, settings)
                trained += 1
            results.append((candidate.recipe, checkpoint))
        with _recording(job):
            training = _selected(detector, job, results)
    outcome = JobResult(job.key, job.label, trained=trained)
    scorer = _Scorer(suite, job, detector, training, data, device, settings.progress, settings.git, weights)
    with _recording(job):
        outcome.cells = [scorer.score(cell) for cell in job.cells]
    outcome.seconds = time.perf_counter() - start
    return outcome


def _train(suite: WorkerSuite, job: JobPlan, recipe: Recipe, key: str, real: Subset, fake: Subset,
           store: CheckpointStore, device: torch.device, settings: Settings) -> Checkpoint:
    seed_everything(job.seed)  # the initial weights are part of what the seed fixes
    detector = build_detector(job.entry.name, pretrained=job.entry.pretrained, classes=job.classes,
                              adapt=suite.input_size, **job.entry.kwargs)
    images = np.concatenate([real.images, fake.images])
    if job.classes:  # class k is the k-th fake source, in the order the subset drew them
        fakes = np.concatenate([np.full(s["drawn"], k, int) for k, s in enumerate(fake.sources, start=1)])
    else:
        fakes = np.ones(fake.count, int)
    labels = np.r_[np.zeros(real.count, int), fakes]
    result = fit(detector, images, labels, recipe, job.seed, device, settings.progress,
                 description=f"{job.entry.name} on {job.train_name}")
    info = {
        "detector": job.entry.name, "kwargs": job.entry.kwargs, "recipe": recipe.model_dump(mode="json"),
        "seed": job.seed, "threshold": result.threshold, "val": result.val,
        "selected_epoch": result.selected_epoch, "history": result.history, "seconds": result.seconds,
        "n_train": result.n_train, "n_val": result.n_val, "train_real": real.sha256, "train_fake": fake.sha256,
        "hardware": hardware(str(device)),
    }
    return store.put(key, result.state, info)


def best_candidate(results: list[tuple[Recipe, Checkpoint]]) -> tuple[Recipe, Checkpoint]:
    """The grid candidate a job keeps: :data:`SELECTION_RULE` on its checkpoints' validation metrics."""
    return max(results, key=lambda rc: (rc[1].info["val"]["balanced_accuracy"], -rc[1].info["val"]["loss"]))


def _evaluate_only(suite: WorkerSuite, job: JobPlan, real: Subset, fake: Subset,
                   device: torch.device) -> tuple[DetectorModel, Training, Weights]:
    """A detector with weights made elsewhere, its threshold (fixed, or chosen on the validation split of the job's
    training set exactly as training chooses it) and the record's ``weights`` section."""
    entry = job.entry
    detector = build_detector(entry.name, adapt=suite.input_size, **entry.kwargs)
    path = entry.weights_file(job.seed)
    loaded = load_weights(detector.model, path, entry.strip_prefix, entry.add_prefix, entry.name)
    if loaded.sha256 != job.weights_sha256:
        raise WeightsError(f"{path} changed since the run was planned (sha256 {loaded.sha256[:12]}, planned "
                           f"{(job.weights_sha256 or '')[:12]}): run the suite again")
    if job.calibration is not None:
        recipe = job.calibration
        labels = np.r_[np.zeros(real.count, int), np.ones(fake.count, int)]
        val = np.sort(validation_split(labels, recipe, job.seed)[1])  # the split training validates on
        images = np.concatenate([real.images, fake.images])[val]
        logits = detector.logits(images, device)
        threshold = choose_threshold(labels[val], logits)
        scores = point_metrics(labels[val], logits, threshold)
        targets = torch.from_numpy(labels[val]).float()
        loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits), targets))
        balanced = (scores["accuracy_real"] + scores["accuracy_fake"]) / 2
        training = Training(threshold=threshold, threshold_rule=entry.threshold_rule(), trained_on=None,
                            val={"loss": loss, "balanced_accuracy": balanced, **scores}, n_val=len(val),
                            val_fraction=recipe.val_fraction, calibrated_on=job.train_name)
    else:
        training = Training(threshold=(entry.threshold or FixedThreshold(probability=0.5)).value,
                            threshold_rule=entry.threshold_rule(), trained_on=None)
    return detector, training, Weights.model_validate(loaded.describe())


def _selected(detector: DetectorModel, job: JobPlan, results: list[tuple[Recipe, Checkpoint]]) -> Training:
    """What training said of the job's best candidate on validation, whose weights ``detector`` takes."""
    best_recipe, best = best_candidate(results)
    detector.load_state(best.state_dict())
    return Training(
        checkpoint=best.key,
        checkpoint_sha256=best.info["sha256"],
        recipe=best_recipe.model_dump(mode="json"),
        threshold=best.info["threshold"],
        val=best.info["val"],
        selected_epoch=best.info["selected_epoch"],
        train_seconds=best.info["seconds"],
        trained_on=best.info["hardware"],
        n_train=best.info["n_train"],
        n_val=best.info["n_val"],
        selection=SELECTION_RULE,
        grid=[
            GridCandidate(recipe={k: r.model_dump(mode="json")[k] for k in job.entry.grid}, checkpoint=c.key,
                          val_balanced_accuracy=c.info["val"]["balanced_accuracy"], val_loss=c.info["val"]["loss"])
            for r, c in results
        ] if job.entry.grid else [],
    )


class JobError(RuntimeError):
    """A job's detector gave what no record can hold: scores that are not finite, or not one per image, or
    sections that do not make a valid record."""


@contextmanager
def _recording(job: JobPlan) -> Iterator[None]:
    """A record section of ``job`` that fails validation while built inside, as a one-line :class:`JobError` naming
    the section and field."""
    try:
        yield
    except ValidationError as exc:
        raise JobError(f"{job.label}: what it measured does not make a valid record ({exc.title} "
                       f"{validation_problems(exc, shown=1)}): a bug in bench or in the detector's plugin") from None


def checked_outputs(outputs: np.ndarray, count: int, what: str) -> np.ndarray:
    """``outputs`` of ``count`` images ((count,) logits, or (count, classes)); :class:`JobError` if they are
    shaped otherwise or not all finite."""
    if outputs.ndim not in (1, 2) or len(outputs) != count:
        raise JobError(f"{what}: the detector returned outputs of shape {tuple(outputs.shape)} for {count} images, "
                       f"expected ({count},) or ({count}, classes)")
    bad = int((~np.isfinite(outputs)).any(axis=tuple(range(1, outputs.ndim))).sum())
    if bad:
        raise JobError(f"{what}: the detector's scores of {bad} of {count} images are not finite (NaN or infinite)")
    return outputs


def source_attribution(classes: tuple[str, ...], test_fake: str, real: np.ndarray,
                       fake: np.ndarray) -> SourceAttribution:
    """Which class a source-attribution detector assigns to the real and the fake test images (counts)."""
    def counts(logits: np.ndarray) -> dict[str, int]:
        predicted = np.bincount(logits.argmax(1), minlength=len(classes))
        return {name: int(n) for name, n in zip(classes, predicted, strict=True)}

    return SourceAttribution(classes=list(classes), predicted={"real": counts(real), test_fake: counts(fake)})


class _Scorer:
    """Scores one job's cells; logits of a (test subset, perturbation) are computed once per job."""

    def __init__(self, suite: WorkerSuite, job: JobPlan, detector: DetectorModel, training: Training, data: Prepared,
                 device: torch.device, progress: bool | None, git: dict | None = None,
                 weights: Weights | None = None) -> None:
        self.suite, self.job, self.detector, self.training = suite, job, detector, training
        self.data, self.device, self.progress, self.git = data, device, progress, git
        self.weights = weights  # evaluate-only: the weights file, its sha256 and that it was not trained here
        self._logits: dict[tuple[str, str], np.ndarray] = {}

    def score(self, cell: CellPlan) -> CellResult:
        """The cell's record, its per-image scores and its attribution picture."""
        suite, job, threshold = self.suite, self.job, self.training.threshold
        real, fake = self.data.test[suite.test_real], self.data.test[cell.test_fake]
        differentiable = self.detector.differentiable
        if not differentiable and needs_gradients(cell.perturbation.name):
            result = {"not_applicable": f"{cell.perturbation.name} follows gradients and {job.entry.name} is not "
                      "differentiable", "metrics": {}, "confusion_matrix": [], "n_real": real.count,
                      "n_fake": fake.count, "threshold": threshold,
                      "bootstrap": Bootstrap(resamples=suite.bootstrap, level=suite.ci_level)}
            scores = []
        else:
            outputs = [self.logits(subset, label, cell.perturbation) for subset, label in ((real, 0), (fake, 1))]
            scores = [detection_scores(o) for o in outputs]
            labels = np.r_[np.zeros(real.count, int), np.ones(fake.count, int)]
            result = evaluate(labels, np.concatenate(scores), threshold, suite.bootstrap, suite.ci_level)
            if cell.perturbation.name != "clean":
                clean = detection_scores(self.logits(fake, 1, PerturbationEntry(name="clean")))
                result["metrics"]["evasion_rate"] = evasion_rate(clean, scores[1], threshold, suite.ci_level)
            if self.detector.classes:
                result["source_attribution"] = source_attribution(self.detector.classes, cell.test_fake, *outputs)
        figure = None
        if cell.explains and not differentiable:
            result["attribution"] = Attribution(not_applicable=f"gradient attributions need a differentiable "
                                                f"detector; {job.entry.name} is not")
        elif cell.explains:
            result["attribution"], figure = self._attribute(cell, real, fake)
        scored = np.concatenate(scores).astype(np.float32) if scores else None
        return CellResult(self._record(cell, real, fake, result, scored), scored, figure)

    def _record(self, cell: CellPlan, real: Subset, fake: Subset, result: dict, scored: np.ndarray | None) -> Record:
        """The cell's record: what was measured (``result``), on what, by what, and how."""
        suite, job, perturbation = self.suite, self.job, cell.perturbation
        train_real, train_fake = self.data.train[job.train_name]
        return Record(
            schema_version=SCHEMA_VERSION,
            key=cell.key,
            suite=suite.name,
            suite_config=suite.suite_config,
            detector=job.entry.name,
            detector_kwargs=job.entry.kwargs,
            detector_code=job.detector_code,
            train={"name": job.train_name, "real": train_real.describe(), "fake": train_fake.describe()},
            test={"name": cell.test_fake, "real": real.describe(), "fake": fake.describe()},
            perturbation={"name": perturbation.name, "params": perturbation.params, "label": perturbation.label},
            seed=job.seed,
            data_seed=suite.data_seed,
            encoding=suite.encoding,
            input=InputAdaptation(size=self.detector.spec.input_size, adapted=dict(zip(("real", "fake"), cell.input,
                                                                                   strict=True))),
            test_images_in_training={  # exact pixel copies; `bench data audit` also finds near copies
                "real": self.data.in_training[(suite.test_real, job.train_name)],
                "fake": self.data.in_training[(cell.test_fake, job.train_name)],
            } if self.weights is None else None,  # weights made elsewhere: their training images are not known here
            training=self.training,
            weights=self.weights,
            **result,
            scores=ScoresFile(file=f"scores/{cell.key}.npy", order="real then fake test images, as drawn",
                              sha256=content_hash(scored)) if scored is not None else None,
            provenance=stamp(job.seed, str(self.device), self.git),
        )

    def _attribute(self, cell: CellPlan, real: Subset, fake: Subset) -> tuple[Attribution, bytes]:
        """Attribution scores of a seeded random draw of test images of each class, and the picture."""
        settings, job = self.suite.attribution, self.job
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job.seed)  # the weights training started from: the randomisation reference
            randomised = build_detector(job.entry.name, classes=job.classes, adapt=self.suite.input_size,
                                        **job.entry.kwargs)
        rng = np.random.default_rng(self.suite.data_seed)
        drawn = [np.asarray(s.images[np.sort(rng.choice(s.count, min(settings.images, s.count), replace=False))])
                 for s in (real, fake)]
        section, picture = explain(self.detector, randomised, *drawn, self.training.threshold, settings,
                                   self.device, self.suite.bootstrap, self.suite.ci_level, self.progress)
        return Attribution.model_validate(section | {"figure": f"figures/{cell.key}.png",
                                                     "draw": "seeded by data_seed"}), picture

    def logits(self, subset: Subset, label: int, perturbation: PerturbationEntry) -> np.ndarray:
        """Logits of a perturbed test subset, computed once per job (per class for source attribution)."""
        cache_key = (subset.sha256, perturbation.label)
        if cache_key not in self._logits:
            function = PERTURBATIONS.get(perturbation.name)
            seed = int(content_key([subset.sha256, perturbation.model_dump()])[:8], 16)
            generator = torch.Generator(device=self.device).manual_seed(seed)
            chunks = []
            starts = range(0, subset.count, 1024)
            slow = perturbation.name != "clean" and len(starts) > 1
            for start in tqdm(starts, desc=perturbation.label, unit="batch", leave=False,
                              disable=not slow or no_bars(self.progress)):
                batch = torch.tensor(np.asarray(subset.images[start : start + 1024]), device=self.device).float() / 255
                labels = torch.full((len(batch),), label, device=self.device)
                perturbed = function(batch, labels, self.detector, generator, **perturbation.params)
                pixels = (perturbed.clamp(0, 1) * 255).round().to(torch.uint8)
                chunks.append(self.detector.outputs(pixels, self.device))
            self._logits[cache_key] = checked_outputs(np.concatenate(chunks), subset.count,
                                                      f"{self.job.entry.name} on {perturbation.label} test images")
        return self._logits[cache_key]
