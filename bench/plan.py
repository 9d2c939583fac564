"""Plan: a suite becomes jobs and cells; on its prepared data, each gets a content key. Pure: nothing is
trained, read from the results folder or written.

A *job* is one detector trained on one training set with one seed (its grid candidates are chosen on
validation); a *cell* is a job scored on one test source under one perturbation. :func:`outline` names them
from the suite alone (what a dry run lists before any source is imported); :func:`plan` keys them. A candidate's
key (the checkpoint's) covers the detector, its arguments, the recipe, the hashes of the exact training images
and the seed; a cell's key covers its job, the names the leaderboard shows (training set, test source), the
hashes of the exact test images, the perturbation and the scoring settings.

A detector from outside bench (an entry-point plugin, a module of the user's) also puts its code into its keys:
the sha256 of its package's source files and its distribution's version (:func:`bench.provenance.code_identity`),
so an edited plugin is retrained and rescored, never served from the cache. A detector shipped in bench adds
nothing, which keeps the keys of every published result as they were: its code is named by the git commit each
record carries, and a change to it that changes what it trains bumps :data:`TRAINING_VERSION`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

from bench.detector import DETECTORS, TIMM_PREFIX
from bench.files import file_sha256
from bench.prepare import Prepared, Subset
from bench.provenance import DetectorCode, code_identity, content_key
from bench.recipe import Recipe
from bench.suite import DetectorEntry, FixedThreshold, PerturbationEntry, Suite

TRAINING_VERSION = 1  # bump when the training loop changes what a checkpoint contains
SCORING_VERSION = 2  # bump when scoring or the record format changes
SELECTION_RULE = "highest validation balanced accuracy, then lowest validation loss"


class PlanError(ValueError):
    """A suite cannot be planned on its data (e.g. a size a detector cannot take); the message says why."""


@dataclass(frozen=True)
class Candidate:
    """One grid point of a job: its recipe and checkpoint key."""

    recipe: Recipe
    key: str


@dataclass(frozen=True)
class CellOutline:
    """A cell as the suite names it: a test source under a perturbation (its key follows from the images)."""

    test_fake: str
    perturbation: PerturbationEntry
    explains: bool  # also carries attributions


def job_label(entry: DetectorEntry, train_name: str, seed: int) -> str:
    """e.g. ``lenet on sd14, seed 0``, or ``lenet (weights lenet.pt) beside sd14`` for one trained elsewhere."""
    if entry.evaluate_only:
        return f"{entry.name} (weights {entry.weights_file(seed).name}) beside {train_name}"
    return f"{entry.name} on {train_name}, seed {seed}"


@dataclass(frozen=True)
class JobOutline:
    """A job as the suite names it, or the part of a planned job still to do: the recipes to train (one per grid
    candidate; none for weights made elsewhere or cached checkpoints) and the cells to score."""

    entry: DetectorEntry
    train_name: str
    seed: int
    recipes: tuple[Recipe, ...]
    cells: tuple[CellOutline, ...]

    @property
    def label(self) -> str:
        return job_label(self.entry, self.train_name, self.seed)


@dataclass(frozen=True)
class CellPlan:
    """One (job) x (test source, perturbation) measurement."""

    key: str
    test_fake: str
    perturbation: PerturbationEntry
    explains: bool  # also carries attributions
    input: tuple[dict | None, dict | None]  # how the real and the fake test images reach the detector


@dataclass(frozen=True)
class JobPlan:
    """One detector trained on one training set with one seed, and the cells it scores."""

    entry: DetectorEntry
    train_name: str
    seed: int
    candidates: tuple[Candidate, ...]
    key: str
    classes: tuple[str, ...]  # source attribution: "real", then the training fake sources
    cells: tuple[CellPlan, ...]
    weights_sha256: str | None = None  # evaluate-only: the sha256 of the weights file the key covers
    detector_code: DetectorCode | None = None  # a detector from outside bench: the code its keys cover
    calibration: Recipe | None = None  # evaluate-only, calibrated: the recipe whose validation split sets the threshold

    @property
    def label(self) -> str:
        return job_label(self.entry, self.train_name, self.seed)

    def with_cells(self, keys: set[str]) -> JobPlan:
        """This job restricted to the cells whose keys are in ``keys``."""
        return replace(self, cells=tuple(c for c in self.cells if c.key in keys))

    def remaining(self, cached: set[str], recorded: set[str]) -> JobOutline:
        """What is left of this job: the cells without a record in ``recorded`` and, when any is left, the
        candidates without a checkpoint in ``cached`` (a job whose cells are all recorded trains nothing)."""
        cells = tuple(CellOutline(c.test_fake, c.perturbation, c.explains) for c in self.cells if c.key not in recorded)
        recipes = tuple(c.recipe for c in self.candidates if c.key not in cached) if cells else ()
        return JobOutline(self.entry, self.train_name, self.seed, recipes, cells)


@dataclass(frozen=True)
class Plan:
    """Every job of a suite, in order."""

    suite: Suite
    jobs: tuple[JobPlan, ...]

    @property
    def cells(self) -> list[CellPlan]:
        return [c for j in self.jobs for c in j.cells]


def grid(suite: Suite, entry: DetectorEntry) -> list[Recipe]:
    """The recipes of a detector's grid (one recipe without a grid)."""
    base = DETECTORS.get(entry.name).recipe_for(suite.recipe_profile).updated(**suite.recipe, **entry.recipe)
    fields, values = list(entry.grid), list(entry.grid.values())
    return [base.updated(**dict(zip(fields, point, strict=True))) for point in itertools.product(*values)]


def pretrained_identity(pretrained: str | None) -> str | None:
    """What identifies a detector's starting weights in a key: a local file's sha256, or a timm model name."""
    if pretrained is None or pretrained.startswith(TIMM_PREFIX):
        return pretrained
    return file_sha256(Path(pretrained))


def weights_identity(entry: DetectorEntry, seed: int) -> str:
    """The sha256 of an evaluate-only detector's weights file for ``seed``; PlanError if there is none."""
    path = entry.weights_file(seed)
    if not path.is_file():
        raise PlanError(f"detector {entry.name!r}: weights file {path} not found (paths are relative to the current "
                        "folder): give the path of the .safetensors, .pt or .pth file")
    return file_sha256(path)


def input_adaptation(suite: Suite, detector: str, size: int) -> dict | None:
    """How images of side ``size`` reach ``detector`` (None when they already fit); raises if they cannot."""
    wanted = DETECTORS.get(detector).input_size
    if size == wanted:
        return None
    if suite.input_size == "center-crop" and size < wanted:
        raise PlanError(f"detector {detector!r} takes {wanted}x{wanted} images and cannot centre-crop {size}x{size} "
                        "ones: set the suite's input_size to resize")
    return {"from": size, "to": wanted, "method": suite.input_size}


def outline(suite: Suite) -> list[JobOutline]:
    """Every job of ``suite`` with its cells, in order, from the suite alone (nothing imported or keyed)."""
    jobs = []
    for train, entry, seed in itertools.product(suite.train, suite.detectors, suite.seeds):
        once = entry.evaluate_only and not entry.weights_per_seed and seed != suite.seeds[0]
        if once or (entry.evaluate_only and entry.calibrate and train.name not in entry.calibrate):
            continue  # weights made elsewhere: scored once (per seed with {seed}) beside each training set listed
        cells = tuple(CellOutline(fake, perturbation, suite.attribution is not None and perturbation.name == "clean")
                      for fake, perturbation in itertools.product(suite.test_fakes(), suite.perturbations))
        recipes = () if entry.evaluate_only else tuple(grid(suite, entry))
        jobs.append(JobOutline(entry, train.name, seed, recipes, cells))
    return jobs


def plan(suite: Suite, data: Prepared) -> Plan:
    """Jobs and cells of ``suite`` on its prepared data, with their keys."""
    test_real = data.test[suite.test.real]
    jobs = []
    weights = {e.weights_file(s): weights_identity(e, s) for e in suite.detectors if e.evaluate_only
               for s in (suite.seeds if e.weights_per_seed else suite.seeds[:1])}
    trains = {t.name: t for t in suite.train}
    for job in outline(suite):
        entry, seed, train = job.entry, job.seed, trains[job.train_name]
        real, fake = data.train[train.name]
        if real.size != fake.size:
            raise PlanError(f"training set {train.name!r} mixes {real.size}x{real.size} reals and "
                            f"{fake.size}x{fake.size} fakes: train on images of one size")
        code = code_identity(DETECTORS.get(entry.name).factory.__module__)
        identity = {"code": code.model_dump()} if code else {}  # builtin detectors: keys as they always were
        if entry.evaluate_only:
            job_key = evaluate_only_key(suite, entry, weights[entry.weights_file(seed)], seed, real, fake, identity)
            candidates, classes = (), ()
        else:
            pretrained = pretrained_identity(entry.pretrained)
            classes = ("real", *train.fake) if train.attribute_sources else ()
            adapted = input_adaptation(suite, entry.name, real.size)
            candidates = tuple(
                Candidate(recipe, content_key({
                    "detector": entry.name, "kwargs": entry.kwargs, "pretrained": pretrained,
                    "recipe": recipe.model_dump(mode="json"), "train_real": real.sha256, "train_fake": fake.sha256,
                    "seed": seed, "version": TRAINING_VERSION, **({"classes": classes} if classes else {}),
                    **({"input": adapted} if adapted else {}), **identity,
                }))
                for recipe in job.recipes
            )
            job_key = content_key({"candidates": [c.key for c in candidates], "selection": SELECTION_RULE})
        cells = []
        for cell in job.cells:
            test_fake = data.test[cell.test_fake]
            inputs = tuple(input_adaptation(suite, entry.name, s.size) for s in (test_real, test_fake))
            measured = {
                "job": job_key, "train_set": train.name, "test_source": cell.test_fake,
                "test_real": test_real.sha256, "test_fake": test_fake.sha256,
                "perturbation": cell.perturbation.model_dump(), "bootstrap": suite.bootstrap,
                "ci_level": suite.ci_level, "version": SCORING_VERSION,
                "input": list(inputs),
            }
            if cell.explains:
                measured["attribution"] = suite.attribution.model_dump()
            cells.append(CellPlan(content_key(measured), cell.test_fake, cell.perturbation, cell.explains, inputs))
        calibration = grid(suite, entry)[0] if entry.evaluate_only and entry.calibrate else None
        jobs.append(JobPlan(entry, train.name, seed, candidates, job_key, classes, tuple(cells),
                            weights.get(entry.weights_file(seed)) if entry.evaluate_only else None, code, calibration))
    return Plan(suite, tuple(jobs))


def evaluate_only_key(suite: Suite, entry: DetectorEntry, sha256: str, seed: int, real: Subset, fake: Subset,
                      identity: dict) -> str:
    """The key of an evaluate-only job: the weights' sha256 and remapping, the detector's code ``identity`` (empty
    for one shipped in bench), and the threshold rule with, when it is calibrated, the exact validation images it is
    chosen on (training set hashes, seed, validation share)."""
    if entry.calibrate:
        rule: dict = {"calibrate": {"train_real": real.sha256, "train_fake": fake.sha256, "seed": seed,
                                    "val_fraction": grid(suite, entry)[0].val_fraction,
                                    "input": input_adaptation(suite, entry.name, real.size),
                                    "version": TRAINING_VERSION}}
    else:
        rule = {"threshold": (entry.threshold or FixedThreshold(probability=0.5)).value}
    return content_key({"detector": entry.name, "kwargs": entry.kwargs, "weights": sha256,
                        "remap": [entry.strip_prefix, entry.add_prefix], **rule, **identity})
