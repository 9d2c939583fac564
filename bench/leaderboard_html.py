"""The HTML leaderboard (``leaderboard.html``): one static page with sortable tables, intervals, record links and the
figures.

The page is rendered with the Jinja2 template ``bench/templates/leaderboard.html.j2`` from the same report model as
the Markdown (:class:`bench.leaderboard_model.Leaderboard`, cells aggregated over training seeds) and has every section
the Markdown has; tables wrap (an interval under its value) so that the page needs no sideways scrolling at 1400 px.
Sorting is a few lines of inline JavaScript (no network access needed to view it). Every cell's row links to the JSON
records it was read from (one per seed; a number links to its record where there is one), and the figures
under ``figures/`` are embedded by relative path, so the folder can be published as it is (e.g. on GitHub
Pages). Records are untrusted input: a path read from one becomes a link only if it is relative and stays
inside the results folder (:func:`inside_link`); otherwise it is shown as text.
"""

from __future__ import annotations

import html
import re
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from bench.generalization import HEADING as GENERALIZATION_HEADING
from bench.generalization import NOTE as GENERALIZATION_NOTE
from bench.generalization import POOL_BY
from bench.leaderboard_model import (
    BELOW_CHANCE,
    FAILED,
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
    comparison_note,
    comparison_tables,
    covers_note,
    digits,
    evaluate_only_notes,
    failed_jobs,
    flagged_below_chance,
    headline_paragraphs,
    matrix_tables,
    not_compared,
    provenance_summary,
    robustness_note,
    robustness_tables,
    source_attribution_tables,
    sources_table,
    threshold_texts,
)
from bench.records import Record

_TEMPLATES = Environment(
    loader=PackageLoader("bench", "templates"), autoescape=select_autoescape(["html.j2"]),
    trim_blocks=True, lstrip_blocks=True,
)


def inside_link(path: object) -> str | None:
    """``path`` as a URL-quoted relative link if it names a file inside the results folder; None for anything
    else (a URL with a scheme such as ``javascript:``, an absolute path, a ``..`` step, control characters)."""
    if not isinstance(path, str) or not path or path != path.strip() or any(ord(c) < 32 or c == "\\" for c in path):
        return None
    parts = PurePosixPath(path).parts
    if path.startswith("/") or ".." in parts or ":" in parts[0]:
        return None
    return quote(path, safe="/")


def _number(row: pd.Series, name: str) -> dict:
    """A table cell for a metric: its value, interval, sort key, the below-chance flag and, for a cell with one
    record, the record's link."""
    value = row.get(name)
    if value is None or pd.isna(value):
        return {"text": FAILED if str(row.get("interval", "")).startswith(f"{FAILED}:") else "–", "sort": ""}
    low, high = row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    ci = None if low is None or pd.isna(low) or low == high else (low, high)
    places = digits(ci)
    records = row["records"].split()
    return {"text": f"{value:.{places}f}", "sort": repr(float(value)),
            "ci": f"[{ci[0]:.{places}f}, {ci[1]:.{places}f}]" if ci else "",
            "href": inside_link(records[0]) if len(records) == 1 else None,
            "flag": BELOW_CHANCE if flagged_below_chance(row, name) else ""}


def _plain(value: object, digits: int = 3) -> dict:
    """A table cell for a plain number (a spread, a chance level); "–" where there is none."""
    if value is None or pd.isna(value):
        return {"text": "–", "sort": ""}
    return {"text": f"{value:.{digits}f}", "sort": repr(float(value))}


def _table(board: Leaderboard, group: pd.DataFrame, pictures: dict[str, str]) -> dict:
    """One sortable table: the cells (over their seeds) of one (training set, test source) pair."""
    metrics = cell_columns(group, board.headline, only_measured=True)
    columns = [("detector", "Detector"), ("perturbation", "Perturbation"), ("seeds", "Seeds")]
    columns += [(key, label) for key, label, _ in metrics]
    columns += [("threshold", "Threshold"), ("train_seconds", "Train s"), ("epochs", "Epochs"), ("records", "Records")]
    rows = []
    for (_, row), threshold in zip(group.iterrows(), threshold_texts(board, group), strict=True):
        links = []
        for seed, record in zip(row["seeds"].split(), row["records"].split(), strict=True):
            links.append({"text": f"json {seed}", "href": inside_link(record)})
            if record in pictures:
                links.append({"text": f"attributions {seed}", "href": inside_link(pictures[record])})
        cells = [{"text": row["name"]},
                 {"text": row["perturbation"], "sort": f"{row['level_order']:04d} {row['perturbation']}"},
                 {"text": row["seeds"].replace(" ", ", "), "sort": str(row["n_seeds"])}]
        cells += [_number(row, key) if interval else _plain(row[key]) for key, _, interval in metrics]
        rows.append([*cells, {"text": threshold},
                     {"text": "–" if pd.isna(row["train_seconds"]) else f"{row['train_seconds']:.0f}",
                      "sort": repr(float(row["train_seconds"]))},
                     {"text": str(row["epochs"]), "sort": str(row["epochs"])},
                     {"links": links}])
    return {
        "heading": cell_heading(group.iloc[0]),
        "note": f"{cell_note(group)} {THRESHOLD_NOTE}",
        "footnote": below_chance_note() if below_chance(group) else "",
        "columns": [{"key": key, "label": label} for key, label in columns],
        "rows": rows,
    }


def _html_table(frame: pd.DataFrame) -> Markup:
    """A text table as escaped HTML, Markdown's ``**bold**`` as <strong>."""
    shown = frame.map(lambda value: re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(str(value))))
    return Markup(shown.to_html(index=False, escape=False, border=0, classes="summary"))


def _summary(heading: str, note: str, frame: pd.DataFrame, link_column: str | None = None) -> dict:
    """A summary table (attribution scores, source attribution) as escaped HTML."""
    shown = frame.map(lambda value: html.escape(str(value)))
    if link_column:
        shown[link_column] = frame[link_column].map(
            lambda path: f'<a href="{html.escape(link)}">png</a>' if (link := inside_link(path)) else "png (not linked)"
        )
    return {"heading": heading, "note": note,
            "table": Markup(shown.to_html(index=False, escape=False, border=0, classes="summary"))}


def _summaries(records: list[Record]) -> list[dict]:
    summaries = [_summary(f"Source attribution: {heading}", SOURCE_ATTRIBUTION_NOTE, frame)
                 for heading, frame in source_attribution_tables(records)]
    attribution = attribution_table(records)
    if attribution is not None:
        summaries.append(_summary("Attributions", *attribution, link_column="Picture"))
    return summaries


def _sections(board: Leaderboard) -> list[dict]:
    """The generalization view, the cross-source matrix and the detector comparisons, each a heading, a note and
    text tables."""
    sections = []
    if board.generalization:
        sections.append({"heading": GENERALIZATION_HEADING, "note": GENERALIZATION_NOTE.format(pool=POOL_BY),
                         "footnote": "", "tables": [(f"{heading}. {note}", _html_table(table))
                                                    for heading, note, table in board.generalization.tables()]})
    clean = board.cells[board.cells["family"] == "clean"] if not board.cells.empty else board.cells
    matrix = matrix_tables(board.cells)
    if matrix:
        sections.append({"heading": "Cross-source matrix", "note": f"{MATRIX_NOTE} {covers_note(clean)}",
                         "footnote": below_chance_note() if below_chance(clean) else "",
                         "tables": [(label, _html_table(table)) for label, table, _ in matrix]})
    comparisons = comparison_tables(board.comparisons, board.headline)
    skipped = not_compared(board.comparisons, board.headline)
    if comparisons or skipped:
        sections.append({"heading": "Which detector is better",
                         "note": f"{comparison_note(board.headline)} {skipped}".strip(), "footnote": "",
                         "tables": [(heading, _html_table(table)) for heading, table in comparisons]})
    robustness = robustness_tables(board.cells)
    if robustness:
        sections.append({"heading": "Robustness", "note": robustness_note(board.cells),
                         "footnote": below_chance_note() if below_chance(board.cells) else "",
                         "tables": [(f"{heading}: {label}", _html_table(table))
                                    for heading, tables, _ in robustness for label, table in tables]})
    return sections


def _sources(board: Leaderboard) -> dict | None:
    """The Sources section: per test source its image count, encoding and card."""
    table = sources_table(board)
    if table is None:
        return None
    reference, frame = table
    rows = [{"source": row["Source"], "images": row["Images"], "encoding": row["Encoding"],
             "card": inside_link(row["Card"]), "path": row["Card"], "name": row["name"]} for _, row in frame.iterrows()]
    return {"note": SOURCES_NOTE.replace("`{reference}`", "{reference}").format(reference=reference), "rows": rows}


def render_html(board: Leaderboard, title: str, description: str = "") -> str:
    """The leaderboard page for ``board``, to be written into its results folder (whose figures it embeds)."""
    records, frame = board.records, board.cells
    pictures = {f"records/{r.key}.json": r.attribution.figure for r in records
                if r.attribution is not None and r.attribution.figure is not None}
    figures_dir = Path(board.root or ".") / "figures"
    sources = _sources(board)
    linked = set(pictures.values())  # per-record attribution pictures are linked from their rows
    linked |= {row["path"] for row in sources["rows"]} if sources else set()  # source cards: in the Sources section
    figures = [link for p in sorted(figures_dir.glob("*.png"))
               if f"figures/{p.name}" not in linked and (link := inside_link(f"figures/{p.name}"))]
    tables = [_table(board, group, pictures) for _, group in frame.groupby(["trained_on", "tested_on"], sort=True)] \
        if not frame.empty else []
    return _TEMPLATES.get_template("leaderboard.html.j2").render(
        title=title,
        description=description.strip(),
        count=len(records),
        reading=READING,
        headline=headline_paragraphs(board),
        provenance=provenance_summary(records) if records else None,
        budget=budgets(records) if records else "",
        evaluate_only=evaluate_only_notes(records),
        failed_note=FAILED_NOTE,
        failed=[{"text": text, "href": inside_link(path), "path": path} for text, path in failed_jobs(frame)],
        sources=sources,
        figures=figures,
        sections=_sections(board),
        summaries=_summaries(records),
        tables=tables,
    )
