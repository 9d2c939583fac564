"""Result records: the typed model of one cell's record, a cell's identity, and loading a results folder.

One JSON file per cell (``records/<key>.json``) is the source of truth; leaderboards, diffs and
verification read records through :func:`load_records`, which upgrades records written by older
versions of bench (:data:`UPGRADES`), validates every file against :class:`Record` and names the file that fails.
The suite a record ran (``suite_config``, tens of kilobytes) is kept once per folder, in ``suites/<sha256>.json``,
which the record file names (:func:`stored_files` writes both; reading fills ``suite_config`` in from it).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.provenance import DetectorCode

SCHEMA_VERSION = 4  # 2: cell keys name the training set and the test source; records may point at their scores
# 3: typed sections; a detector trained elsewhere has no training hardware (training.trained_on is None)
# 4: the suite config may be kept once per folder (suite_config_file) instead of in every record
SUITE_CONFIGS = "suites"  # <results folder>/suites/<sha256>.json: one suite config, shared by the records naming it


class CellIdentity(NamedTuple):
    """What a cell measured, as leaderboards show it; two records of one folder never share one."""

    detector: str
    kwargs: str  # the detector's constructor arguments as canonical JSON ("{}" for none)
    trained_on: str
    tested_on: str
    perturbation: str
    seed: int

    def describe(self) -> str:
        """One line for humans, e.g. ``lenet, sd14 -> ddpm-cifar10, clean, seed 0``."""
        kwargs = "" if self.kwargs == "{}" else f" {self.kwargs}"
        return f"{self.detector}{kwargs}, {self.trained_on} -> {self.tested_on}, {self.perturbation}, seed {self.seed}"


IDENTITY_FIELDS = ("detector", "kwargs", "trained on", "tested on", "perturbation", "seed")


def canonical_kwargs(kwargs: dict) -> str:
    """A detector's constructor arguments as canonical JSON, the form a cell identity holds."""
    return json.dumps(kwargs, sort_keys=True, separators=(",", ":"))


class RecordError(ValueError):
    """A results folder cannot be read as a set of records (unreadable or invalid record, two for one cell)."""


class Section(BaseModel):
    """A part of a record: unknown fields are refused; NaN and infinities are written as JSON's NaN/Infinity, as
    ``json.dumps`` writes them, so that a stored NaN stays NaN."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class Metric(Section):
    """A number measured on the test images, with its interval (None without resampling)."""

    value: float | None
    ci: tuple[float, float] | None = None
    interval: str | None = Field(None, description="how ci was computed, e.g. bootstrap-percentile or wilson")
    n: int | None = Field(None, description="the denominator of a proportion that is not over all test images")


class SourceDraw(Section):
    """One source's part of a subset: which source, how many of its images were drawn, how they were encoded."""

    model_config = ConfigDict(extra="allow")  # what the source's manifest adds (e.g. part_of) travels along

    name: str
    sha256: str
    count: int
    drawn: int | None = None  # records before schema 2 do not say
    encoding: dict[str, Any] | None = None
    encoded: str | None = None


class SubsetDescription(Section):
    """The images of one class (real or fake) of a training set or test source, as drawn."""

    sources: list[SourceDraw]
    count: int
    sha256: str
    removed_duplicates: int | None = None  # records before schema 2 do not say


class Subsets(Section):
    """A training set or a test source by name, with its real and its fake images."""

    name: str
    real: SubsetDescription
    fake: SubsetDescription


class Perturbation(Section):
    """What was done to the test images before scoring (``clean``: nothing)."""

    name: str
    params: dict[str, Any] = {}
    label: str


class Resize(Section):
    """How images of one side reached the detector's input size."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    from_: int = Field(alias="from")
    to: int
    method: str


class AdaptedSides(Section):
    """How the real and the fake test images reached the detector (None: they fit)."""

    real: Resize | None = None
    fake: Resize | None = None


class InputAdaptation(Section):
    """The detector's input size and how the real and the fake test images reached it (None: they fit)."""

    size: int
    adapted: AdaptedSides


class InTraining(Section):
    """How many test images of each class occur pixel for pixel in the training set."""

    real: int
    fake: int


class Hardware(Section):
    """The machine a number was measured (or a detector trained) on."""

    device: str
    cpu: str | None = None
    cpu_cores: int | None = None
    torch_threads: int | None = None
    platform: str | None = None
    gpu: str | None = None

    def describe(self) -> str:
        """One line, e.g. ``cpu: AMD EPYC 7B13 (2 cores)`` or ``cuda: NVIDIA H100``."""
        if self.gpu is not None:
            return f"{self.device}: {self.gpu}"
        return f"{self.device}: {self.cpu} ({self.cpu_cores} cores)"


class GridCandidate(Section):
    """One candidate of a job's grid and what validation said of it."""

    recipe: dict[str, Any]  # the grid's fields of its recipe
    checkpoint: str
    val_balanced_accuracy: float
    val_loss: float


class Training(Section):
    """How the detector came to be: trained here (``trained_on`` the hardware, with its checkpoint, recipe and grid)
    or trained elsewhere (``trained_on`` None; ``threshold_rule`` says how the threshold was set, and ``Record.weights``
    names the weights)."""

    threshold: float = Field(description="the decision threshold on the logit, chosen on validation data only")
    threshold_rule: str | None = None
    val: dict[str, float] = Field({}, description="metrics on the validation split (and its loss)")
    n_train: int = 0
    n_val: int = 0
    val_fraction: float | None = None
    calibrated_on: str | None = Field(None, description="evaluate-only: the training set whose validation split "
                                      "chose the threshold")
    train_seconds: float = 0.0
    trained_on: Hardware | None = Field(description="None: not trained here (evaluate-only)")
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    recipe: dict[str, Any] | None = None  # the selected candidate's bench.recipe.Recipe, as it was then
    selected_epoch: int | None = None
    selection: str | None = None
    grid: list[GridCandidate] = []

    @property
    def trained_here(self) -> bool:
        return self.trained_on is not None


class Bootstrap(Section):
    """How the intervals were resampled."""

    resamples: int
    level: float
    seed: int = 0
    stratified: bool = True


class ScoresFile(Section):
    """Where the cell's per-image scores are, in what order, and their sha256."""

    file: str
    order: str
    sha256: str


class Weights(Section):
    """A detector trained elsewhere (evaluate-only): the weights file, its sha256, format and key remapping."""

    file: str
    sha256: str
    format: str
    remap: dict[str, str | None]
    inside: str | None = None
    note: str = Field(description="``weights from FILE (sha256 ...), not trained here``")


class SourceAttribution(Section):
    """Which class a source-attribution detector assigned to the real and the fake test images (counts)."""

    classes: list[str]
    predicted: dict[str, dict[str, int]]  # test side ("real" or the fake source) -> class -> images


class Attribution(Section):
    """Attribution scores of a draw of test images per method, and the picture; or why there are none."""

    not_applicable: str | None = None
    settings: dict[str, Any] | None = None  # the suite's attribution settings
    images: dict[str, int] | None = None  # images drawn per class
    centre_area_share: float | None = None
    methods: dict[str, dict[str, Metric]] = {}  # method -> score -> value with interval
    grad_cam_layer: str | None = None
    figure: str | None = None
    draw: str | None = None


class Git(Section):
    """The commit of the code that measured a record, and whether that code had uncommitted changes."""

    commit: str | None
    dirty: bool | None


class Provenance(Section):
    """How a record was produced: command, seed, library versions, commit, hardware and when."""

    command: str
    seed: int
    versions: dict[str, str | None]
    git: Git
    hardware: Hardware
    created: str


class Record(Section):
    """One cell's result record, as schema version 3 reads it (older versions are upgraded by
    :func:`parse_record`; ``schema_version`` keeps the version the file was written with)."""

    schema_version: int = SCHEMA_VERSION
    key: str
    suite: str
    suite_config: dict[str, Any] | None = Field(None, description="the suite with command-line overrides: enough "
                                                "to re-run it")
    suite_config_file: str | None = Field(None, description="where the results folder keeps suite_config "
                                          "(suites/<sha256>.json); the record file then leaves suite_config out")
    detector: str
    detector_kwargs: dict[str, Any] = {}
    detector_code: DetectorCode | None = None
    train: Subsets
    test: Subsets
    perturbation: Perturbation
    seed: int
    data_seed: int = 0
    encoding: str | None = None
    input: InputAdaptation | None = None
    test_images_in_training: InTraining | None = Field(None, description="None for weights made elsewhere: their "
                                                       "training images are not known here")
    training: Training
    weights: Weights | None = None
    metrics: dict[str, Metric]
    confusion_matrix: list[list[int]]
    n_real: int
    n_fake: int
    threshold: float
    bootstrap: Bootstrap
    scores: ScoresFile | None = None
    not_applicable: str | None = Field(None, description="why the cell does not apply (e.g. an attack on a "
                                       "detector without gradients); its metrics are then empty")
    source_attribution: SourceAttribution | None = None
    attribution: Attribution | None = None
    provenance: Provenance

    @property
    def identity(self) -> CellIdentity:
        """The cell this record measured."""
        return CellIdentity(self.detector, canonical_kwargs(self.detector_kwargs), self.train.name, self.test.name,
                            self.perturbation.label, self.seed)

    @property
    def evaluate_only(self) -> str | None:
        """``weights from FILE (sha256 ...), not trained here`` for a detector trained elsewhere; else None."""
        return self.weights.note if self.weights is not None else None

    @property
    def scored_images(self) -> tuple[str, str]:
        """The sha256 of the real and of the fake test images: equal for two records scored on the same images."""
        return self.test.real.sha256, self.test.fake.sha256


def _unchanged(data: dict) -> dict:
    return data


def _from_2(data: dict) -> dict:
    """Version 2 said "not trained here" of a detector trained elsewhere as if it were hardware."""
    training = data.get("training")
    if isinstance(training, dict) and (training.get("trained_on") or {}).get("device") == "not trained here":
        data = data | {"training": training | {"trained_on": None}}
    return data


UPGRADES: dict[int, Callable[[dict], dict]] = {1: _unchanged, 2: _from_2, 3: _unchanged}  # version -> the next


def stored_files(record: Record) -> dict[str, bytes]:
    """What a results folder stores of ``record``, by path relative to the folder: its suite config in
    ``suites/<sha256>.json`` (the same file for every record of that suite) and ``records/<key>.json`` naming it."""
    if record.suite_config is None:
        return {f"records/{record.key}.json": record.model_dump_json(indent=2).encode()}
    config = json.dumps(record.suite_config, indent=1, sort_keys=True).encode()
    name = f"{SUITE_CONFIGS}/{hashlib.sha256(config).hexdigest()}.json"
    text = record.model_copy(update={"suite_config_file": name}).model_dump_json(indent=2, exclude={"suite_config"})
    return {name: config, f"records/{record.key}.json": text.encode()}


@functools.lru_cache(maxsize=8)
def _suite_config_text(path: Path, modified: int) -> bytes | None:
    """The bytes of a suite config file, or None if they do not match its sha256 name; read and hashed once per
    version of the file (``modified``), not once per record naming it."""
    text = path.read_bytes()
    return text if hashlib.sha256(text).hexdigest() == path.stem else None


def _with_suite_config(data: dict, path: Path) -> dict:
    """``data`` with ``suite_config`` read from the file ``suite_config_file`` names, in the results folder holding
    ``path`` (``<folder>/records/[superseded/]<key>.json``); raises :class:`RecordError` if it is missing or altered."""
    name = data.get("suite_config_file")
    if data.get("suite_config") is not None or not isinstance(name, str):
        return data
    folder = next((p.parent for p in Path(path).parents if p.name == "records"), Path(path).parent)
    file = folder / name
    try:
        text = _suite_config_text(file.resolve(), file.stat().st_mtime_ns)
    except OSError:
        raise RecordError(f"record {path} keeps its suite in {file}, which cannot be read: restore it (e.g. git "
                          "checkout) or re-run its suite") from None
    if Path(name).parent.name != SUITE_CONFIGS or text is None:
        raise RecordError(f"record {path} names {name}, whose content does not match its sha256 name: restore the "
                          "file (e.g. git checkout) or re-run its suite")
    return data | {"suite_config": json.loads(text)}


def parse_record(data: object, path: Path | str) -> Record:
    """``data`` (a stored record of any schema version) upgraded and validated as a :class:`Record`; raises
    :class:`RecordError` naming ``path`` and the first fields that fail."""
    if not isinstance(data, dict):
        raise RecordError(f"record {path} is not a record (a JSON {type(data).__name__}): delete it and re-run")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise RecordError(f"record {path} has schema_version {version!r}, which this bench cannot read (it reads 1 "
                          f"to {SCHEMA_VERSION}): upgrade bench, or re-run its suite")
    for step in range(version, SCHEMA_VERSION):
        data = UPGRADES[step](data)
    data = _with_suite_config(data, Path(path))
    try:
        return Record.model_validate(data | {"schema_version": version})
    except ValidationError as exc:
        raise RecordError(f"record {path} is not a valid record ({validation_problems(exc)}): delete it and re-run "
                          "its suite") from None


def validation_problems(exc: ValidationError, shown: int = 3) -> str:
    """The first ``shown`` problems of ``exc`` on one line: ``training.threshold: Input should be a valid number``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()[:shown])


def _json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"record {path} is not valid JSON ({exc}): delete it and re-run its suite") from exc


def read_record(path: Path) -> Record:
    """One record file, upgraded and validated."""
    return parse_record(_json(path), path)


def _record_files(directory: Path) -> list[Path]:
    folder = Path(directory) / "records"
    if not folder.is_dir():
        raise FileNotFoundError(f"{directory} has no records/ folder: give a results folder (e.g. results/smoke)")
    return sorted(folder.glob("*.json"))


def load_records(directory: Path) -> dict[Path, Record]:
    """Every record in ``directory/records/`` by path, in file-name order, each upgraded and validated."""
    return {path: read_record(path) for path in _record_files(directory)}


def unique_cells(records: Mapping[Path, Record]) -> dict[CellIdentity, Record]:
    """Records keyed by the cell they measured; two records for one cell are an error."""
    found: dict[CellIdentity, tuple[Path, Record]] = {}
    for path, record in records.items():
        cell = record.identity
        if cell in found:
            raise RecordError(
                f"{found[cell][0]} and {path} both measure {cell.describe()}: a results folder should hold one "
                "suite's records (delete the stale one, or render the runs into separate folders)"
            )
        found[cell] = (path, record)
    return {cell: record for cell, (_, record) in found.items()}


def metric_text(value: float, ci: tuple[float, float] | list[float] | None, digits: int = 3) -> str:
    """A metric as leaderboards, diffs and verification reports print it: ``0.871 [0.855, 0.886]``."""
    return f"{value:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")

