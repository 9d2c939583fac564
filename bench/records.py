"""Result records: the typed model of one cell's record, a cell's identity, and loading a results folder.

One JSON file per cell (``records/<key>.json``) is the source of truth; leaderboards, diffs and
verification read records through :func:`load_records`, which validates every file against
:class:`Record` and names the file that fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 2  # 2: cell keys name the training set and the test source; records may point at their scores


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


class Metric(BaseModel):
    """A metric's value on the test images, with its interval (None without resampling)."""

    model_config = ConfigDict(extra="allow")

    value: float | None
    ci: list[float] | None = None


class Record(BaseModel):
    """One cell's result record (``schema_version`` 1 records predate the field and are read as 1)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    key: str
    suite: str
    suite_config: dict[str, Any] | None = None
    detector: str
    detector_kwargs: dict[str, Any] = {}
    train: dict[str, Any]
    test: dict[str, Any]
    perturbation: dict[str, Any]
    seed: int
    data_seed: int = 0
    encoding: str | None = None
    input: dict[str, Any] | None = Field(None, description="detector input size and how images reached it")
    test_images_in_training: dict[str, int] | None = None
    training: dict[str, Any]
    weights: dict[str, Any] | None = Field(None, description="a detector trained elsewhere (evaluate-only): the "
                                           "weights file, its sha256, format and key remapping, and a note saying it "
                                           "was not trained here; the threshold rule is training.threshold_rule")
    metrics: dict[str, Metric]
    confusion_matrix: list[list[int]]
    n_real: int
    n_fake: int
    threshold: float
    bootstrap: dict[str, Any]
    scores: dict[str, Any] | None = Field(None, description="file with the per-image scores, and its sha256")
    not_applicable: str | None = Field(None, description="why the cell does not apply (e.g. an attack on a "
                                       "detector without gradients); its metrics are then empty")
    source_attribution: dict[str, Any] | None = None
    attribution: dict[str, Any] | None = None
    provenance: dict[str, Any]


def identity(record: dict) -> CellIdentity:
    """The cell a record (as a dict) measured."""
    return CellIdentity(record["detector"], canonical_kwargs(record.get("detector_kwargs", {})),
                        record["train"]["name"], record["test"]["name"], record["perturbation"]["label"],
                        record["seed"])


def evaluate_only(record: dict) -> str | None:
    """``weights from FILE (sha256 ...), not trained here`` for a detector trained elsewhere; None for one trained
    by the run that wrote ``record``."""
    return (record.get("weights") or {}).get("note")


def metric_text(value: float, ci: tuple[float, float] | list[float] | None, digits: int = 3) -> str:
    """A metric as leaderboards, diffs and verification reports print it: ``0.871 [0.855, 0.886]``."""
    return f"{value:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def parse_record(data: object, path: Path | str) -> dict:
    """``data`` validated as a record, as a dict; raises :class:`RecordError` naming ``path``."""
    if not isinstance(data, dict):
        raise RecordError(f"record {path} is not a record (a JSON {type(data).__name__}): delete it and re-run")
    try:
        Record.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()[:3])
        raise RecordError(f"record {path} is not a valid record ({problems}): delete it and re-run its suite") from None
    return data


def read_record(path: Path) -> dict:
    """One record file, validated."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"record {path} is not valid JSON ({exc}): delete it and re-run its suite") from exc
    return parse_record(data, path)


def load_records(directory: Path) -> dict[Path, dict]:
    """Every record in ``directory/records/`` by path, in file-name order, each validated."""
    folder = Path(directory) / "records"
    if not folder.is_dir():
        raise FileNotFoundError(f"{directory} has no records/ folder: give a results folder (e.g. results/smoke)")
    return {path: read_record(path) for path in sorted(folder.glob("*.json"))}


def by_identity(records: dict[Path, dict]) -> dict[CellIdentity, dict]:
    """Records keyed by the cell they measured; two records for one cell are an error."""
    found: dict[CellIdentity, tuple[Path, dict]] = {}
    for path, record in records.items():
        cell = identity(record)
        if cell in found:
            raise RecordError(
                f"{found[cell][0]} and {path} both measure {cell.describe()}: a results folder should hold one "
                "suite's records (delete the stale one, or render the runs into separate folders)"
            )
        found[cell] = (path, record)
    return {cell: record for cell, (_, record) in found.items()}
