"""Leaderboards rendered from result records (never edited by hand): Markdown, CSV and figures.

Besides one detailed table per (training set, test source), the Markdown has, where the records call
for them: a cross-source matrix (rows = what a detector was trained on, columns = what it was tested on)
with its heatmaps, robustness tables (a metric per perturbation level) with robustness curves, and the
attribution scores.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import figures
from bench.files import write_atomic
from bench.metrics import METRICS
from bench.provenance import summarise_provenance
from bench.records import metric_text

SHOWN = {
    "accuracy": "Acc",
    "f1": "F1",
    "roc_auc": "AUC",
    "average_precision": "AP",
    "accuracy_real": "Acc real",
    "accuracy_fake": "Acc fake",
}
ROBUSTNESS = {"accuracy": "Acc", "f1": "F1", "roc_auc": "AUC", "evasion_rate": "Evasion"}
MATRIX = {"roc_auc": "AUC", "accuracy_fake": "Acc fake"}  # AP depends on each source's share of fakes
ATTRIBUTION = {
    "faithfulness": "Faithfulness",
    "faithfulness_random_weights": "Random weights",
    "randomisation_spearman": "Randomisation rho",
    "centre_share_real": "Centre share real",
    "centre_share_fake": "Centre share fake",
}


def _perturbation_order(record: dict) -> int:
    """Position of the record's perturbation in its suite (0 for records that do not carry their suite)."""
    listed = record.get("suite_config", {}).get("perturbations", [])
    wanted = {k: record["perturbation"][k] for k in ("name", "params")}
    return next((i for i, p in enumerate(listed) if p == wanted), 0)


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: what was measured, each metric with its interval, and where it came from."""
    rows = []
    for r in records:
        row = {
            "detector": r["detector"],
            "trained_on": r["train"]["name"],
            "tested_on": r["test"]["name"],
            "perturbation": r["perturbation"]["label"],
            "family": r["perturbation"]["name"],
            "level_order": _perturbation_order(r),
            "seed": r["seed"],
            "n_train_real": r["train"]["real"]["count"],
            "n_train_fake": r["train"]["fake"]["count"],
            "n_test_real": r["n_real"],
            "n_test_fake": r["n_fake"],
            "threshold": r["threshold"],
            "train_seconds": r["training"]["train_seconds"],
            "epochs": r["training"]["recipe"]["epochs"],
        }
        for name in [*METRICS, "evasion_rate"]:
            metric = r["metrics"].get(name, {"value": None, "ci": None})
            low, high = metric["ci"] if metric["ci"] else (None, None)
            row |= {name: metric["value"], f"{name}_ci_low": low, f"{name}_ci_high": high}
        row["record"] = f"records/{r['key']}.json"
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["level"] = [_level(frame, row) for _, row in frame.iterrows()]
    return frame.sort_values(
        ["trained_on", "tested_on", "level_order", "perturbation", "accuracy"],
        ascending=[True, True, True, True, False],
    ).reset_index(drop=True)


def _params(label: str, family: str) -> dict[str, str]:
    """``{"eps": "8/255", "steps": "10"}`` from a label such as ``pgd(eps=8/255, steps=10)``."""
    inner = label[len(family) + 1 : -1]
    return dict(part.split("=", 1) for part in inner.split(", ")) if inner else {}


def _level(frame: pd.DataFrame, row: pd.Series) -> str:
    """The perturbation's parameters that vary within its family, e.g. ``eps=8/255`` on a PGD ladder."""
    if row["family"] == "clean":
        return "clean"
    params = _params(row["perturbation"], row["family"])
    family = [_params(label, row["family"]) for label in frame.loc[frame["family"] == row["family"], "perturbation"]]
    varying = [k for k in params if len({p.get(k) for p in family}) > 1]
    return ", ".join(f"{k}={params[k]}" for k in varying or params) or row["family"]


def _with_interval(row: pd.Series, name: str) -> str:
    value, low, high = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if value is None or pd.isna(value):
        return "–"
    return metric_text(value, None if low is None or pd.isna(low) else (low, high))


def _slug(*parts: str) -> str:
    return "-".join(p.replace("/", "_").replace(" ", "_") for p in parts)


def _has_matrix(frame: pd.DataFrame) -> bool:
    clean = frame[frame["family"] == "clean"]
    return clean["trained_on"].nunique() > 1 or clean["tested_on"].nunique() > 1


def figure_files(frame: pd.DataFrame) -> dict[str, bytes]:
    """The leaderboard's PNG figures by path relative to its folder: heatmaps and robustness curves."""
    out: dict[str, bytes] = {}
    if frame.empty:
        return out
    if _has_matrix(frame):
        clean = frame[frame["family"] == "clean"]
        for metric, label in MATRIX.items():
            out[f"figures/{_slug('cross-source', metric)}.png"] = figures.cross_source_heatmap(
                clean, metric, label, f"Cross-source {label} on clean test images"
            )
    if (frame["family"] != "clean").any():
        for (trained_on, tested_on), group in frame.groupby(["trained_on", "tested_on"], sort=True):
            for metric in ("accuracy", "roc_auc"):
                out[f"figures/{_slug('robustness', trained_on, tested_on, metric)}.png"] = figures.robustness_curves(
                    group, metric, ROBUSTNESS[metric], f"Trained on {trained_on}, tested on {tested_on}"
                )
    return out


def _pivot(frame: pd.DataFrame, index: list[str], columns: str, metric: str, order: list[str]) -> str:
    shown = frame.assign(shown=[_with_interval(row, metric) for _, row in frame.iterrows()])
    table = shown.pivot_table(index=index, columns=columns, values="shown", aggfunc="first")
    table = table.reindex(columns=order).fillna("–").reset_index()
    return table.rename(columns={"detector": "Detector", "trained_on": "Trained on"}).to_markdown(index=False)


def _matrix_section(frame: pd.DataFrame) -> list[str]:
    if not _has_matrix(frame):
        return []
    clean = frame[frame["family"] == "clean"]
    lines = [
        "## Cross-source matrix",
        "",
        "Clean test images. Rows: the detector and what it was trained on; columns: the fake test source, each "
        "scored against the same real test images.",
        "",
    ]
    order = list(dict.fromkeys(clean["tested_on"]))
    for metric, label in MATRIX.items():
        lines += [f"### {label}", "", _pivot(clean, ["detector", "trained_on"], "tested_on", metric, order), "",
                  f"![{label} heatmap](figures/{_slug('cross-source', metric)}.png)", ""]
    return lines


def _robustness_section(frame: pd.DataFrame) -> list[str]:
    if not (frame["family"] != "clean").any():
        return []
    lines = [
        "## Robustness",
        "",
        "One column per perturbation, in suite order. Evasion: the share of the fakes detected on clean input "
        'that the perturbation turns into "real".',
        "",
    ]
    for (trained_on, tested_on), group in frame.groupby(["trained_on", "tested_on"], sort=True):
        order = list(dict.fromkeys(group.sort_values("level_order", kind="stable")["perturbation"]))
        lines += [f"### Trained on {trained_on}, tested on {tested_on}", ""]
        for metric, label in ROBUSTNESS.items():
            if group[metric].notna().any():
                lines += [f"**{label}**", "", _pivot(group, ["detector"], "perturbation", metric, order), ""]
        lines += [f"![{ROBUSTNESS[m]} curves](figures/{_slug('robustness', trained_on, tested_on, m)}.png)"
                  for m in ("accuracy", "roc_auc")]
        lines.append("")
    return lines


def attribution_table(records: list[dict]) -> tuple[str, pd.DataFrame] | None:
    """The attribution scores of the records that have them (an explanation and one row per method)."""
    explained = sorted((r for r in records if "attribution" in r),
                       key=lambda r: (r["train"]["name"], r["detector"], r["seed"]))
    if not explained:
        return None
    first = explained[0]["attribution"]
    note = (
        f"Means over {first['images']['real']} real and {first['images']['fake']} fake test images per detector, "
        "with bootstrap 95% intervals. Faithfulness: insertion AUC minus deletion AUC (higher is better); "
        "random weights: the same score for the architecture with its initial random weights. Randomisation "
        "rho: rank correlation of the trained and random-weight maps (lower: the maps depend on what was "
        f"learned). Centre share: attribution mass in the central square, which is {first['centre_area_share']:.0%} "
        "of the image; above that, the detector looks at the object rather than the background."
    )
    rows = []
    for r in explained:
        for method, scores in r["attribution"]["methods"].items():
            row = {"Detector": r["detector"], "Trained on": r["train"]["name"], "Method": method}
            for key, label in ATTRIBUTION.items():
                row[label] = metric_text(scores[key]["value"], scores[key]["ci"])
            row["Picture"] = r["attribution"]["figure"]
            rows.append(row)
    return note, pd.DataFrame(rows)


def source_attribution_tables(records: list[dict]) -> list[tuple[str, pd.DataFrame]]:
    """Per source-attribution job, a heading and the share of each test source's images given each class."""
    jobs: dict[tuple, list[dict]] = {}
    for r in records:
        if "source_attribution" in r and r["perturbation"]["name"] == "clean":
            jobs.setdefault((r["detector"], r["train"]["name"], r["seed"]), []).append(r)
    tables = []
    for (detector, trained_on, seed), group in sorted(jobs.items()):
        classes = group[0]["source_attribution"]["classes"]
        rows = {}
        for r in sorted(group, key=lambda r: r["test"]["name"]):
            predicted = r["source_attribution"]["predicted"]
            for source in sorted(predicted, key=lambda name: name != "real"):  # the real test images first
                counts = predicted[source]
                name = f"{r['test']['real']['sources'][0]['name']} (real)" if source == "real" else source
                total = sum(counts.values())
                rows[name] = {"Test source": name, "Images": total,
                              **{c: f"{counts[c] / total:.1%}" for c in classes}}
        tables.append((f"{detector} trained on {trained_on} (seed {seed})", pd.DataFrame(list(rows.values()))))
    return tables


SOURCE_ATTRIBUTION_NOTE = ("Detectors trained with one class per training source: the share of each test source's "
                           "images given each class (rows: true source, columns: predicted class; clean test "
                           "images).")


def _attribution_section(records: list[dict]) -> list[str]:
    table = attribution_table(records)
    if table is None:
        return []
    note, frame = table
    frame = frame.assign(Picture=frame["Picture"].map(lambda path: f"[png]({path})"))
    return ["## Attributions", "", note, "", frame.to_markdown(index=False), ""]


def _source_attribution_section(records: list[dict]) -> list[str]:
    tables = source_attribution_tables(records)
    if not tables:
        return []
    lines = ["## Source attribution", "", SOURCE_ATTRIBUTION_NOTE, ""]
    for heading, frame in tables:
        lines += [f"### {heading}", "", frame.to_markdown(index=False), ""]
    return lines


def _cell_tables(frame: pd.DataFrame) -> list[str]:
    lines = ["## Every cell", ""]
    for (trained_on, tested_on), group in frame.groupby(["trained_on", "tested_on"], sort=True):
        first = group.iloc[0]
        lines += [
            f"### Trained on {trained_on} ({first['n_train_real']} real + {first['n_train_fake']} fake images), "
            f"tested on {tested_on} ({first['n_test_real']} real vs {first['n_test_fake']} fake)",
            "",
        ]
        rows = list(group.iterrows())
        table = pd.DataFrame({
            "Detector": group["detector"],
            "Perturbation": group["perturbation"],
            "Seed": group["seed"],
            **{label: [_with_interval(row, name) for _, row in rows] for name, label in SHOWN.items()},
            **({"Evasion": [_with_interval(row, "evasion_rate") for _, row in rows]}
               if group["evasion_rate"].notna().any() else {}),
            "Train s": group["train_seconds"].map(lambda s: f"{s:.0f}"),
            "Epochs": group["epochs"],
            "Record": group["record"].map(lambda p: f"[json]({p})"),
        })
        lines += [table.to_markdown(index=False), ""]
    return lines


def render_markdown(records: list[dict], title: str, description: str = "") -> str:
    """A Markdown leaderboard: provenance header, summary sections, then one table per (training, test) pair."""
    frame = records_frame(records)
    lines = [f"# Leaderboard: {title}", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [
        f"Rendered from {len(records)} result records in `records/` (one JSON per cell); do not edit by hand.",
        "Each number is the value on the test subset with its bootstrap 95% interval in brackets; the decision",
        "threshold was chosen on validation data carved from the training sources.",
        "",
    ]
    if frame.empty:
        return "\n".join([*lines, "No records."]) + "\n"
    made = summarise_provenance(records)
    lines += [
        f"- Trained on: {'; '.join(made['trained_on'])}",
        f"- Scored on: {'; '.join(made['scored_on'])}",
        f"- Command: {'; '.join(f'`{c}`' for c in made['commands'])}",
        f"- Git commit: {', '.join(made['commits'])}",
        f"- {'; '.join(made['versions'])}",
        f"- Seeds: {', '.join(made['seeds'])}; bootstrap resamples: {', '.join(made['bootstrap'])}",
        "",
    ]
    lines += _matrix_section(frame) + _source_attribution_section(records) + _robustness_section(frame)
    lines += _attribution_section(records)
    lines += _cell_tables(frame)
    return "\n".join(lines)


def write_leaderboard(
    records: list[dict], out_dir: Path, title: str, description: str = ""
) -> dict[str, Path]:
    """Write ``leaderboard.{md,csv,json,html}`` and ``figures/*.png`` into ``out_dir``; returns the tables' paths."""
    from bench.html import render_html  # imported here: bench.html renders this module's frame

    out_dir = Path(out_dir)
    frame = records_frame(records)
    for relative, picture in figure_files(frame).items():
        write_atomic(out_dir / relative, picture)
    paths = {name: out_dir / f"leaderboard.{suffix}"
             for name, suffix in (("markdown", "md"), ("csv", "csv"), ("json", "json"), ("html", "html"))}
    write_atomic(paths["markdown"], render_markdown(records, title, description).encode())
    write_atomic(paths["csv"], frame.to_csv(index=False).encode())
    write_atomic(paths["json"], frame.to_json(orient="records", indent=2, double_precision=15).encode())
    write_atomic(paths["html"], render_html(records, out_dir, title, description).encode())  # after the figures
    return paths
