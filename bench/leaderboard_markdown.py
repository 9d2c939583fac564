"""The Markdown leaderboard (``leaderboard.md``), rendered from the report model (:mod:`bench.leaderboard_model`).

Every string a user or a record gave (suite description, names, arguments, labels, reasons) is made inert:
backslashes, ``|``, ``<``, ``>`` and backticks cannot end a table cell, open HTML or a code span.

The page: title, description and headline, how to read it and its provenance; then, where the records call for
them, failed jobs, the generalization view, a cross-source matrix with its heatmaps, the detector comparisons,
source attribution, robustness tables with robustness curves, attribution scores and source cards; last one
detailed table per (training set, test source).
"""

from __future__ import annotations

import re
from dataclasses import replace

import pandas as pd

from bench.leaderboard_model import (
    FAILED_NOTE,
    MATRIX_NOTE,
    READING,
    SOURCE_ATTRIBUTION_NOTE,
    SOURCES_NOTE,
    THRESHOLD_NOTE,
    Leaderboard,
    attribution_table,
    below_chance,
    below_chance_note,
    budgets,
    cell_columns,
    cell_heading,
    cell_note,
    cell_text,
    comparison_note,
    comparison_tables,
    covers_note,
    evaluate_only_notes,
    failed_jobs,
    headline_paragraphs,
    matrix_tables,
    missing,
    not_compared,
    provenance_summary,
    robustness_note,
    robustness_tables,
    source_attribution_tables,
    sources_table,
    spread_text,
    threshold_texts,
)
from bench.records import Record

MARKDOWN_INERT = str.maketrans({"\\": "\\\\", "|": "\\|", "<": "&lt;", ">": "&gt;", "`": "\\`",
                                "\n": " ", "\r": " "})


def inert(text: str, inline: bool = True) -> str:
    """``text`` as Markdown shows it literally: backslashes, ``|``, ``<``, ``>`` and backticks escaped, and (``inline``)
    line breaks as spaces, so that it cannot end a table cell or row, open HTML or a code span."""
    if inline:
        return text.translate(MARKDOWN_INERT)
    return "\n".join(line.translate(MARKDOWN_INERT) for line in text.splitlines())


def _inert_value(value: object) -> object:
    """``value`` with every string in it (dict keys included) made :func:`inert`."""
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, dict):
        return {_inert_value(k): _inert_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_inert_value(v) for v in value]
    return value


def _inert_record(record: Record) -> Record:
    """The record with every string in it made :func:`inert`."""
    return Record.model_validate(_inert_value(record.model_dump(by_alias=True)))


def markdown_safe(board: Leaderboard) -> Leaderboard:
    """The board with every string of its records and frames made :func:`inert`, for Markdown only."""
    return replace(board, records=[_inert_record(r) for r in board.records], cells=board.cells.map(_inert_value),
                   seeds=board.seeds.map(_inert_value), comparisons=board.comparisons.map(_inert_value))


def code_span(text: str) -> str:
    """``text`` as a Markdown code span that no backtick in it can close (on one line)."""
    text = " ".join(text.splitlines())
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _failures_section(frame: pd.DataFrame) -> list[str]:
    """One line per failed job (its reason and its failure file), where there are any."""
    jobs = failed_jobs(frame)
    if not jobs:
        return []
    return ["## Failed jobs", "", FAILED_NOTE, "", *(f"- {text} ([why]({path}))" for text, path in jobs), ""]


def _matrix_section(frame: pd.DataFrame) -> list[str]:
    tables = matrix_tables(frame)
    if not tables:
        return []
    clean = frame[frame["family"] == "clean"]
    lines = ["## Cross-source matrix", "", f"{MATRIX_NOTE} {covers_note(clean)}", ""]
    for label, table, figure in tables:
        lines += [f"### {label}", "", table.to_markdown(index=False), "", f"![{label} heatmap]({figure})", ""]
    if below_chance(clean):
        lines += [below_chance_note(), ""]
    return lines


def _comparison_section(board: Leaderboard) -> list[str]:
    tables, skipped = comparison_tables(board.comparisons, board.headline), not_compared(board.comparisons,
                                                                                          board.headline)
    if not tables and not skipped:
        return []
    lines = ["## Which detector is better", "", f"{comparison_note(board.headline)} {skipped}".strip(), ""]
    for heading, table in tables:
        lines += [f"### {heading}", "", table.to_markdown(index=False, disable_numparse=True), ""]
    return lines


def _robustness_section(frame: pd.DataFrame) -> list[str]:
    views = robustness_tables(frame)
    if not views:
        return []
    lines = ["## Robustness", "", robustness_note(frame), ""]
    for heading, tables, curves in views:
        lines += [f"### {heading}", ""]
        for label, table in tables:
            lines += [f"**{label}**", "", table.to_markdown(index=False), ""]
        lines += [f"![{label} curves]({path})" for label, path in curves]
        lines.append("")
    if below_chance(frame):
        lines += [below_chance_note(), ""]
    return lines


def _attribution_section(records: list[Record]) -> list[str]:
    table = attribution_table(records)
    if table is None:
        return []
    note, frame = table
    frame = frame.assign(Picture=frame["Picture"].map(lambda path: f"[png]({path})"))
    return ["## Attributions", "", note, "", frame.to_markdown(index=False), ""]


def _source_attribution_section(records: list[Record]) -> list[str]:
    tables = source_attribution_tables(records)
    if not tables:
        return []
    lines = ["## Source attribution", "", SOURCE_ATTRIBUTION_NOTE, ""]
    for heading, frame in tables:
        lines += [f"### {heading}", "", frame.to_markdown(index=False), ""]
    return lines


def _cell_tables(board: Leaderboard) -> list[str]:
    frame = board.cells
    lines = ["## Every cell", ""]
    for _, group in frame.groupby(["trained_on", "tested_on"], sort=True):
        rows = list(group.iterrows())
        table = {"Detector": group["name"], "Perturbation": group["perturbation"],
                 "Seeds": group["seeds"].str.replace(" ", ", ")}
        for column, label, interval in cell_columns(group, board.headline):
            table[label] = [cell_text(row, column) for _, row in rows] if interval else group[column].map(spread_text)
        table |= {
            "Threshold": threshold_texts(board, group),
            "Train s": ["–" if row["weights"] or missing(row["train_seconds"]) else f"{row['train_seconds']:.0f}"
                        for _, row in rows],
            "Epochs": ["–" if missing(row["epochs"]) else int(row["epochs"]) for _, row in rows],
            "Records": [" ".join(f"[{seed}]({path})" for seed, path in zip(row["seeds"].split(), row["records"].split(),
                                                                         strict=True)) for _, row in rows],
        }
        lines += [f"### {cell_heading(group.iloc[0])}", "", f"{cell_note(group)} {THRESHOLD_NOTE}", "",
                  pd.DataFrame(table).to_markdown(index=False, disable_numparse=True), ""]
        if below_chance(group):
            lines += [below_chance_note(), ""]
    return lines


def _sources_section(board: Leaderboard) -> list[str]:
    """Per test source: its count, encoding and card (sample grid and spectrum), where the run drew cards."""
    table = sources_table(board)
    if table is None:
        return []
    reference, frame = table
    lines = ["## Sources", "", SOURCES_NOTE.format(reference=reference), "",
             "| Source | Images | Encoding | Card |", "| --- | --- | --- | --- |"]
    lines += [f"| {row['Source']} | {row['Images']} | {row['Encoding']} | ![{row['name']}]({row['Card']}) |"
              for _, row in frame.iterrows()]
    return [*lines, ""]


def render_markdown(board: Leaderboard, title: str, description: str = "") -> str:
    """A Markdown leaderboard: title, headline and provenance header, summary sections, then one table per (training,
    test) pair; a section of source cards where the run drew them. Every string from the records, the title and the
    description is made :func:`inert`."""
    commands = provenance_summary(board.records)["commands"] if board.records else []
    paragraphs = headline_paragraphs(board)
    board = markdown_safe(board)
    records, frame = board.records, board.cells
    lines = [f"# Leaderboard: {inert(title)}", ""]
    if description:
        lines += [inert(description.strip(), inline=False), ""]
    for number, paragraph in enumerate(paragraphs):
        lines += [f"{'**Headline.** ' if number == 0 else ''}{inert(paragraph)}", ""]
    lines += [f"Rendered from {len(records)} result records in `records/` (one JSON per cell and training seed); do "
              "not edit by hand. Per-seed values: `leaderboard-seeds.csv`.", "", READING, ""]
    if not records:
        return "\n".join([*lines, *_failures_section(frame), "No records."]) + "\n"
    made = provenance_summary(records)
    lines += [
        f"- Trained on: {'; '.join(made['trained_on'])}",
        f"- Scored on: {'; '.join(made['scored_on'])}",
        f"- Command: {'; '.join(code_span(c) for c in commands)}",
        f"- Git commit: {', '.join(made['commits'])}",
        f"- {'; '.join(made['versions'])}",
        f"- Seeds: {', '.join(made['seeds'])}; bootstrap resamples: {', '.join(made['bootstrap'])}",
        f"- Hyperparameter budget (grid points chosen on validation): {budgets(records)}",
        *(f"- {note}" for note in evaluate_only_notes(records)),
        *(f"- Plugin code: {plugin}" for plugin in made["plugins"]),
        "",
    ]
    lines += _failures_section(frame)
    lines += board.generalization.markdown(inert) if board.generalization else []
    lines += _matrix_section(frame) + _comparison_section(board) + _source_attribution_section(records)
    lines += _robustness_section(frame) + _attribution_section(records) + _sources_section(board)
    lines += _cell_tables(board)
    return "\n".join(lines)
