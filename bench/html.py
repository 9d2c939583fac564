"""The HTML leaderboard: one static page with sortable tables, intervals, record links and the figures.

The page is rendered with the Jinja2 template ``bench/templates/leaderboard.html.j2``; sorting is a few
lines of inline JavaScript (no network access needed to view it). Every number links to the JSON record
it was read from, and the figures under ``figures/`` are embedded by relative path, so the folder can be
published as it is (e.g. on GitHub Pages). Records are untrusted input: a path read from one becomes a link
only if it is relative and stays inside the results folder (:func:`inside_link`); otherwise it is shown as text.
"""

from __future__ import annotations

import html
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from bench.leaderboard import (
    SHOWN,
    SOURCE_ATTRIBUTION_NOTE,
    attribution_table,
    records_frame,
    source_attribution_tables,
)
from bench.provenance import summarise_provenance

_TEMPLATES = Environment(
    loader=PackageLoader("bench", "templates"), autoescape=select_autoescape(["html.j2"]),
    trim_blocks=True, lstrip_blocks=True,
)
_METRICS = {**SHOWN, "evasion_rate": "Evasion"}


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
    """A table cell for a metric: its value, interval, sort key and record link."""
    value = row.get(name)
    if value is None or pd.isna(value):
        return {"text": "–", "sort": ""}
    low, high = row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    interval = "" if low is None or pd.isna(low) else f"[{low:.3f}, {high:.3f}]"
    return {"text": f"{value:.3f}", "sort": repr(float(value)), "ci": interval, "href": inside_link(row["record"])}


def _table(group: pd.DataFrame, pictures: dict[str, str]) -> dict:
    """One sortable table: the cells of one (training set, test source) pair."""
    metrics = {name: label for name, label in _METRICS.items() if name in group and group[name].notna().any()}
    columns = [("detector", "Detector"), ("perturbation", "Perturbation"), ("seed", "Seed"), *metrics.items(),
               ("train_seconds", "Train s"), ("epochs", "Epochs"), ("record", "Record")]
    rows = []
    for _, row in group.iterrows():
        links = [{"text": "json", "href": inside_link(row["record"])}]
        if row["record"] in pictures:
            links.append({"text": "attributions", "href": inside_link(pictures[row["record"]])})
        rows.append([
            {"text": row["detector"]},
            {"text": row["perturbation"], "sort": f"{row['level_order']:04d} {row['perturbation']}"},
            {"text": str(row["seed"]), "sort": str(row["seed"])},
            *(_number(row, name) for name in metrics),
            {"text": f"{row['train_seconds']:.0f}", "sort": repr(float(row["train_seconds"]))},
            {"text": str(row["epochs"]), "sort": str(row["epochs"])},
            {"links": links},
        ])
    first = group.iloc[0]
    return {
        "heading": f"Trained on {first['trained_on']} ({first['n_train_real']} real + {first['n_train_fake']} fake "
                   f"images), tested on {first['tested_on']} ({first['n_test_real']} real vs "
                   f"{first['n_test_fake']} fake)",
        "columns": [{"key": key, "label": label} for key, label in columns],
        "rows": rows,
    }


def _summary(heading: str, note: str, frame: pd.DataFrame, link_column: str | None = None) -> dict:
    """A summary table (attribution scores, source attribution) as escaped HTML."""
    shown = frame.map(lambda value: html.escape(str(value)))
    if link_column:
        shown[link_column] = frame[link_column].map(
            lambda path: f'<a href="{html.escape(link)}">png</a>' if (link := inside_link(path)) else "png (not linked)"
        )
    return {"heading": heading, "note": note,
            "table": Markup(shown.to_html(index=False, escape=False, border=0, classes="summary"))}


def _summaries(records: list[dict]) -> list[dict]:
    summaries = [_summary(f"Source attribution: {heading}", SOURCE_ATTRIBUTION_NOTE, frame)
                 for heading, frame in source_attribution_tables(records)]
    attribution = attribution_table(records)
    if attribution is not None:
        summaries.append(_summary("Attributions", *attribution, link_column="Picture"))
    return summaries


def render_html(records: list[dict], out_dir: Path, title: str, description: str = "") -> str:
    """The leaderboard page for ``records``, to be written into ``out_dir`` (whose figures it embeds)."""
    frame = records_frame(records)
    pictures = {f"records/{r['key']}.json": r["attribution"]["figure"] for r in records if "attribution" in r}
    figures_dir = Path(out_dir) / "figures"
    linked = set(pictures.values())  # per-record attribution pictures are linked from their rows
    figures = [link for p in sorted(figures_dir.glob("*.png"))
               if f"figures/{p.name}" not in linked and (link := inside_link(f"figures/{p.name}"))]
    tables = [_table(group, pictures) for _, group in frame.groupby(["trained_on", "tested_on"], sort=True)] \
        if not frame.empty else []
    return _TEMPLATES.get_template("leaderboard.html.j2").render(
        title=title,
        description=description.strip(),
        count=len(records),
        provenance=summarise_provenance(records) if records else None,
        level=records[0]["bootstrap"]["level"] if records else 0.95,
        figures=figures,
        summaries=_summaries(records),
        tables=tables,
    )
