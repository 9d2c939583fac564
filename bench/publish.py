"""Publish: the driver alone writes results — one JSON record per cell (atomically, after its scores and
picture), the reasons of failed jobs, and the leaderboard rendered from the records.

Layout of a results folder::

    records/<cell key>.json   the record (bench.records.Record)
    records/superseded/       records (with their score files and pictures) of cells measured again under a new
                              key, e.g. after a detector's code or recipe changed
    scores/<cell key>.npy     float32 scores of the cell's test images, reals then fakes
    failures/<job key>.json   a job that failed: why, and the cells it left without a record (removed once
                              they have records)
    figures/                  attribution pictures and leaderboard figures
    leaderboard.{md,csv,json,html}

Records read back from an earlier run are checked against their score files (:mod:`bench.integrity`) before
they are published again.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.files import remove_abandoned, write_atomic
from bench.integrity import ScoreFiles, check_records
from bench.leaderboard import write_leaderboard
from bench.provenance import stamp
from bench.records import SUITE_CONFIGS, CellIdentity, Record, RecordError, read_record, stored_files

if TYPE_CHECKING:
    from bench.execute import JobResult, Settings
    from bench.plan import JobPlan, Plan
    from bench.prepare import Prepared
    from bench.suite import Suite

log = logging.getLogger(__name__)

FOLDERS = ("records", "scores", "failures", "figures", SUITE_CONFIGS)  # where killed writers may leave temporary files


def failure_path(root: Path, job: str) -> Path:
    """Where the failure of the job ``job`` (its key) is kept in the results folder ``root``."""
    return Path(root) / "failures" / f"{job}.json"


def load_failures(root: Path, recorded: Iterable[str] | None = None) -> list[dict]:
    """The failed jobs kept in the results folder ``root`` that still have cells without a record (the keys in
    ``recorded``; by default the records present), each with only those cells, in file-name order."""
    root = Path(root)
    have = set(recorded) if recorded is not None else {p.stem for p in (root / "records").glob("*.json")}
    found = []
    for path in sorted((root / "failures").glob("*.json")):
        try:
            failure = json.loads(path.read_text())
            cells = [c for c in failure["cells"] if c["key"] not in have]
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"{path} is not a failure bench wrote ({exc}): delete it") from None
        if cells:
            found.append(failure | {"cells": cells, "file": f"failures/{path.name}"})
    return found


class Publisher:
    """Writes and reads the records of one results folder."""

    def __init__(self, results_dir: Path) -> None:
        self.root = Path(results_dir)
        self.scores = ScoreFiles(self.root)  # score files read (and resampled) by :meth:`records`, for :meth:`render`
        self._keys: dict[CellIdentity, str] | None = None  # the key of each cell's record, once read

    def record_path(self, key: str) -> Path:
        return self.root / "records" / f"{key}.json"

    def remove_abandoned(self) -> list[Path]:
        """Delete the temporary files that killed runs left in the folder (``.leaderboard.csv.*.tmp``, ...)."""
        return [path for folder in (self.root, *(self.root / f for f in FOLDERS)) for path in remove_abandoned(folder)]

    def check_suite(self, suite: str) -> None:
        """Raise :class:`RecordError` if the folder holds records of a suite other than ``suite``: one results folder
        holds one suite's records."""
        for path in sorted((self.root / "records").glob("*.json")):
            try:  # the suite field alone, so that a damaged record of another suite is refused too
                other = json.loads(path.read_text()).get("suite")
            except (ValueError, AttributeError):
                continue  # not a JSON object: set aside when its cell is looked up
            if isinstance(other, str) and other != suite:
                raise RecordError(f"{self.root} holds records of suite {other!r} ({path.name}), not {suite!r}: give "
                                  "this run its own folder with --results, or delete the other suite's records")

    def has_record(self, key: str) -> bool:
        """Whether the cell ``key`` has a valid record; a damaged one is set aside (``.corrupt``) and logged."""
        path = self.record_path(key)
        if not path.is_file():
            return False
        try:
            held = read_record(path).key
            if held != key:
                raise RecordError(f"record {path} holds the cell {held}")
        except (RecordError, OSError) as exc:
            log.warning("%s: set aside as %s.corrupt, the cell will be measured again", exc, path.name)
            path.replace(path.with_suffix(".json.corrupt"))
            return False
        return True

    def recorded(self, plan: Plan) -> set[str]:
        """Keys of the plan's cells that already have a record."""
        return {c.key for c in plan.cells if self.has_record(c.key)}

    def write(self, result: JobResult) -> list[Path]:
        """Write a finished job's scores, pictures and records (each record last), then forget an earlier failure
        of the job; returns the record paths."""
        paths = [self.write_cell(cell.record, cell.scores, cell.figure) for cell in result.cells]
        failure_path(self.root, result.job).unlink(missing_ok=True)
        return paths

    def write_cell(self, record: Record, scores: np.ndarray | None, figure: bytes | None = None) -> Path:
        """Write one cell's score file and attribution picture where its record names them, then its suite config
        (once per folder, :func:`bench.records.stored_files`) and the record, and move a record of the same cell
        under another key aside (:meth:`supersede`); returns the record's path."""
        if record.scores is not None:
            buffer = io.BytesIO()
            np.save(buffer, scores)
            write_atomic(self.root / record.scores.file, buffer.getvalue())
        if figure is not None and record.attribution is not None and record.attribution.figure is not None:
            write_atomic(self.root / record.attribution.figure, figure)
        path = self.record_path(record.key)
        for relative, content in stored_files(record).items():  # the suite config first, the record naming it last
            target = self.root / relative
            if target != path and target.is_file():
                continue  # an earlier record's: the same bytes, as the name is their sha256
            write_atomic(target, content)
        self.supersede(record)
        return path

    def _cell_keys(self) -> dict[CellIdentity, str]:
        if self._keys is None:
            self._keys = {}
            for path in sorted((self.root / "records").glob("*.json")):
                try:
                    self._keys[read_record(path).identity] = path.stem
                except (RecordError, OSError):
                    continue  # a damaged record: set aside when its cell is looked up
        return self._keys

    def supersede(self, record: Record) -> None:
        """Move the record of ``record``'s cell under another key (the cell was measured again under a new key: its
        detector's code or recipe changed), with its score file and picture, into ``records/superseded/``, so that
        the folder keeps one record per cell."""
        keys = self._cell_keys()
        old = keys.get(record.identity)
        keys[record.identity] = record.key
        if old is None or old == record.key:
            return
        aside = self.root / "records" / "superseded"
        aside.mkdir(exist_ok=True)
        for path in (self.record_path(old), self.root / "scores" / f"{old}.npy", self.root / "figures" / f"{old}.png"):
            if path.is_file():
                path.replace(aside / path.name)
        log.warning("%s replaces %s of %s; the old record is kept in records/superseded/", record.key[:12], old[:12],
                 record.identity.describe())

    def write_failure(self, job: JobPlan, reason: str, suite: Suite, data: Prepared, settings: Settings) -> Path:
        """Keep why ``job`` failed, with the cells it leaves without a record (what the leaderboard shows of them)."""
        real, fake = data.train[job.train_name]
        test_real = data.test[suite.test.real]
        order = [p.label for p in suite.perturbations]
        failure = {
            "job": job.key, "label": job.label, "reason": reason, "suite": suite.name,
            "detector": job.entry.name, "detector_kwargs": job.entry.kwargs, "train": job.train_name,
            "seed": job.seed, "n_train": {"real": real.count, "fake": fake.count},
            "epochs": job.candidates[0].recipe.epochs if job.candidates else None,
            "cells": [{"key": c.key, "test": c.test_fake, "n_real": test_real.count,
                       "n_fake": data.test[c.test_fake].count, "level_order": order.index(c.perturbation.label),
                       "perturbation": c.perturbation.model_dump() | {"label": c.perturbation.label}}
                      for c in job.cells],
            "failed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "provenance": stamp(job.seed, settings.device, settings.git),
        }
        path = failure_path(self.root, job.key)
        write_atomic(path, json.dumps(failure, indent=2, sort_keys=True, default=str).encode())
        return path

    def failures(self, plan: Plan) -> list[dict]:
        """The failed jobs of ``plan`` that still have cells without a record; failures of jobs whose cells are all
        recorded now are deleted."""
        jobs = {j.key for j in plan.jobs}
        recorded = self.recorded(plan)
        current = [f for f in load_failures(self.root, recorded) if f["job"] in jobs]
        for job in jobs - {f["job"] for f in current}:
            failure_path(self.root, job).unlink(missing_ok=True)
        return current

    def write_source_cards(self, plan: Plan, data: Prepared) -> None:
        """A card per test source (sample grid, spectrum beside the real test images') in ``figures/``; a card drawn
        from the same pixels (its source's and the real test images' sha256, noted in ``figures/source-cards.json``)
        is kept as it is."""
        from bench.spectrum import card_path, source_card_files

        reference = plan.suite.test.real
        drawn_from = {name: f"{subset.sha256}/{data.test[reference].sha256}" for name, subset in data.test.items()}
        index = self.root / "figures" / "source-cards.json"
        try:
            earlier = json.loads(index.read_text())
        except (OSError, ValueError):  # none yet, or unreadable: every card is drawn again
            earlier = {}
        earlier = earlier if isinstance(earlier, dict) else {}
        stale = [name for name, pixels in drawn_from.items()
                 if earlier.get(name) != pixels or not (self.root / card_path(name)).is_file()]
        if not stale:
            return
        images = {name: np.asarray(data.test[name].images) for name in {*stale, reference}}
        for relative, picture in source_card_files(images, reference, stale).items():
            write_atomic(self.root / relative, picture)
        write_atomic(index, json.dumps({**earlier, **drawn_from}, indent=1, sort_keys=True).encode())

    def records(self, plan: Plan, checked: Iterable[str] = ()) -> list[Record]:
        """The plan's records, in plan order (cells without a record, as of failed jobs, left out); those whose keys
        are in ``checked`` (read back from earlier runs) are checked against their score files first."""
        paths = {c.key: self.record_path(c.key) for c in plan.cells if self.record_path(c.key).is_file()}
        records = {key: read_record(path) for key, path in paths.items()}
        self.scores = ScoreFiles(self.root)
        check_records({paths[k]: records[k] for k in checked if k in records}, self.scores)
        return list(records.values())

    def render(self, plan: Plan, records: list[Record]) -> dict[str, Path]:
        """Write the leaderboard of ``records`` (as :meth:`records` read them) and of the plan's failed jobs; returns
        the paths of its tables."""
        return write_leaderboard(records, self.root, plan.suite.name, plan.suite.description,
                                 failures=self.failures(plan), scores=self.scores)
