"""The leaderboard's files, rendered from result records (never edited by hand): Markdown, HTML, CSV, JSON, figures.

:func:`write_leaderboard` builds the report model (:func:`bench.leaderboard_model.build_leaderboard`) and writes:

- ``leaderboard.csv`` / ``.json``: one row per cell over its seeds: each metric's mean (``accuracy``), interval
  (``accuracy_ci_low``, ``accuracy_ci_high``) and standard deviation across seeds (``accuracy_std``), with
  ``n_seeds``, ``seeds``, ``interval`` (what the intervals cover), chance levels that depend on the test images
  (``ap_chance``) and ``records``.
- ``leaderboard-seeds.csv``: one row per record, i.e. per seed, with the interval stored in it (CSV only: the
  records themselves are its JSON form, and a large protocol's rows ran to megabytes of JSON).
- ``leaderboard-comparisons.csv`` / ``.json``: detectors compared pairwise on the same test images
  (:func:`bench.compare.compare_detectors`).
- ``leaderboard-generalization.csv`` / ``.json`` and ``leaderboard-generalization-comparisons.*``: where tagged
  test sources include generator families a training set has not seen, the generalization view
  (:mod:`bench.generalization`).
- ``leaderboard.md`` (:mod:`bench.leaderboard_markdown`), ``leaderboard.html`` (:mod:`bench.leaderboard_html`) and
  ``figures/*.png`` (:mod:`bench.figures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench import figures
from bench.files import write_atomic
from bench.integrity import ScoreFiles
from bench.leaderboard_html import render_html
from bench.leaderboard_markdown import render_markdown
from bench.leaderboard_model import build_leaderboard, failed, figure_slug, has_matrix, view_metrics

TABLES = {"leaderboard": "cells", "leaderboard-seeds": "seeds", "leaderboard-comparisons": "comparisons"}
CSV_ONLY = {"seeds"}  # tables written without a JSON copy (see the module docstring)


def figure_files(frame: pd.DataFrame) -> dict[str, bytes]:
    """The leaderboard's PNG figures by path relative to its folder: heatmaps and robustness curves, drawn from
    the per-cell frame (means over seeds, with their intervals)."""
    out: dict[str, bytes] = {}
    if frame.empty:
        return out
    over = "mean over training seeds" if (frame["n_seeds"] > 1).any() else "one training seed"
    if has_matrix(frame):
        clean = frame[frame["family"] == "clean"]
        for metric, label in view_metrics("matrix").items():
            out[f"figures/{figure_slug('cross-source', metric)}.png"] = figures.cross_source_heatmap(
                clean, metric, label, f"Cross-source {label} on clean test images ({over})"
            )
    if (frame["family"] != "clean").any():
        for (trained_on, tested_on), group in frame.groupby(["trained_on", "tested_on"], sort=True):
            for metric, label in view_metrics("curves").items():
                out[f"figures/{figure_slug('robustness', trained_on, tested_on, metric)}.png"] = (
                    figures.robustness_curves(group, metric, label,
                                              f"Trained on {trained_on}, tested on {tested_on} ({over})"))
    return out


def write_leaderboard(
    records: list[dict], out_dir: Path, title: str, description: str = "", failures: Sequence[dict] = (),
    scores: ScoreFiles | None = None,
) -> dict[str, Path]:
    """Write the leaderboard of ``records`` (whose score files lie under ``out_dir``; read through ``scores`` where
    given, to reuse what an integrity check read and resampled) and of the cells of the failed jobs ``failures`` into
    ``out_dir``: Markdown, HTML, the CSV and JSON tables of :data:`TABLES` (see the module docstring) and
    ``figures/*.png``; returns the files' paths ("markdown", "html", "csv", "json", "seeds_csv",
    "comparisons_csv", ...)."""
    out_dir = Path(out_dir)
    board = build_leaderboard(records, out_dir, failures, scores)
    views = board.generalization.figures() if board.generalization else {}
    measured = board.cells[~failed(board.cells)] if not board.cells.empty else board.cells
    for relative, picture in (figure_files(measured) | views).items():
        write_atomic(out_dir / relative, picture)
    paths = {"markdown": out_dir / "leaderboard.md", "html": out_dir / "leaderboard.html"}
    write_atomic(paths["markdown"], render_markdown(board, title, description).encode())
    tables = {stem: (name, getattr(board, name)) for stem, name in TABLES.items()}
    tables |= board.generalization.frames() if board.generalization else {}
    for stem, (name, frame) in tables.items():
        texts = {"csv": frame.to_csv(index=False)}
        if name in CSV_ONLY:
            (out_dir / f"{stem}.json").unlink(missing_ok=True)  # an earlier version wrote one: stale now
        else:
            texts["json"] = frame.to_json(orient="records", indent=2, double_precision=15)
        for suffix, text in texts.items():
            paths[suffix if name == "cells" else f"{name}_{suffix}"] = path = out_dir / f"{stem}.{suffix}"
            write_atomic(path, text.encode())
    write_atomic(paths["html"], render_html(board, title, description).encode())  # after the figures
    return paths
