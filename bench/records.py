"""Result records on disk: loading a results folder's records and naming the cell each one measured."""

from __future__ import annotations

import json
from pathlib import Path

Identity = tuple[str, str, str, str, int]
IDENTITY_FIELDS = ("detector", "trained on", "tested on", "perturbation", "seed")


class RecordError(ValueError):
    """A results folder cannot be read as a set of records (unreadable JSON, two records for one cell)."""


def identity(record: dict) -> Identity:
    """The cell a record measured: (detector, training set, test source, perturbation label, seed)."""
    return (record["detector"], record["train"]["name"], record["test"]["name"], record["perturbation"]["label"],
            record["seed"])


def describe(cell: Identity) -> str:
    """One line for humans, e.g. ``lenet, cifake-sd14 -> ddpm-cifar10, clean, seed 0``."""
    detector, trained_on, tested_on, perturbation, seed = cell
    return f"{detector}, {trained_on} -> {tested_on}, {perturbation}, seed {seed}"


def metric_text(value: float, ci: tuple[float, float] | list[float] | None, digits: int = 3) -> str:
    """A metric as leaderboards, diffs and verification reports print it: ``0.871 [0.855, 0.886]``."""
    return f"{value:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def load_records(directory: Path) -> dict[Path, dict]:
    """Every record in ``directory/records/`` by path, in file-name order."""
    folder = Path(directory) / "records"
    if not folder.is_dir():
        raise FileNotFoundError(f"{directory} has no records/ folder: give a results folder (e.g. results/smoke)")
    records = {}
    for path in sorted(folder.glob("*.json")):
        try:
            records[path] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RecordError(f"record {path} is not valid JSON: {exc}") from exc
    return records


def by_identity(records: dict[Path, dict]) -> dict[Identity, dict]:
    """Records keyed by the cell they measured; two records for one cell are an error."""
    found: dict[Identity, tuple[Path, dict]] = {}
    for path, record in records.items():
        cell = identity(record)
        if cell in found:
            raise RecordError(
                f"{found[cell][0]} and {path} both measure {describe(cell)}: a results folder should hold one "
                "suite's records (delete the stale one, or render the runs into separate folders)"
            )
        found[cell] = (path, record)
    return {cell: record for cell, (_, record) in found.items()}
