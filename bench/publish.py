"""Publish: the driver alone writes results — one JSON record per cell (atomically, after its scores and
picture), and the leaderboard rendered from the records.

Layout of a results folder::

    records/<cell key>.json   the record (bench.records.Record)
    scores/<cell key>.npy     float32 scores of the cell's test images, reals then fakes
    figures/                  attribution pictures and leaderboard figures
    leaderboard.{md,csv,json,html}
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np

from bench.execute import JobResult
from bench.files import write_atomic
from bench.leaderboard import write_leaderboard
from bench.plan import Plan
from bench.prepare import Prepared
from bench.records import RecordError, read_record

log = logging.getLogger(__name__)


class Publisher:
    """Writes and reads the records of one results folder."""

    def __init__(self, results_dir: Path) -> None:
        self.root = Path(results_dir)

    def record_path(self, key: str) -> Path:
        return self.root / "records" / f"{key}.json"

    def has_record(self, key: str) -> bool:
        """Whether the cell ``key`` has a valid record; a damaged one is set aside (``.corrupt``) and logged."""
        path = self.record_path(key)
        if not path.is_file():
            return False
        try:
            record = read_record(path)
            if record["key"] != key:
                raise RecordError(f"record {path} holds the cell {record['key']}")
        except (RecordError, OSError) as exc:
            log.warning("%s: set aside as %s.corrupt, the cell will be measured again", exc, path.name)
            path.replace(path.with_suffix(".json.corrupt"))
            return False
        return True

    def recorded(self, plan: Plan) -> set[str]:
        """Keys of the plan's cells that already have a record."""
        return {c.key for c in plan.cells if self.has_record(c.key)}

    def write(self, result: JobResult) -> list[Path]:
        """Write a finished job's scores, pictures and records (each record last); returns the record paths."""
        paths = []
        for cell in result.cells:
            record = cell.record
            if cell.scores is not None:
                buffer = io.BytesIO()
                np.save(buffer, cell.scores)
                write_atomic(self.root / record["scores"]["file"], buffer.getvalue())
            if cell.figure is not None:
                write_atomic(self.root / record["attribution"]["figure"], cell.figure)
            path = self.record_path(record["key"])
            write_atomic(path, json.dumps(record, indent=2, sort_keys=True).encode())
            paths.append(path)
        return paths

    def write_source_cards(self, plan: Plan, data: Prepared) -> None:
        """A card per test source (sample grid, spectrum beside the real test images') in ``figures/``."""
        from bench.spectrum import source_card_files

        images = {name: np.asarray(subset.images) for name, subset in data.test.items()}
        for relative, picture in source_card_files(images, plan.suite.test.real).items():
            write_atomic(self.root / relative, picture)

    def records(self, plan: Plan) -> list[dict]:
        """The plan's records, in plan order."""
        return [read_record(self.record_path(c.key)) for c in plan.cells]

    def render(self, plan: Plan, records: list[dict]) -> dict[str, Path]:
        """Write the leaderboard of ``records``; returns the paths of its tables."""
        return write_leaderboard(records, self.root, plan.suite.name, plan.suite.description)
