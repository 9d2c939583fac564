"""Leaderboards rendered from result records (never edited by hand): Markdown and CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.files import write_atomic
from bench.metrics import METRICS
from bench.provenance import describe_hardware

SHOWN = {
    "accuracy": "Acc",
    "f1": "F1",
    "roc_auc": "AUC",
    "average_precision": "AP",
    "accuracy_real": "Acc real",
    "accuracy_fake": "Acc fake",
}


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: what was measured, each metric with its interval, and where it came from."""
    rows = []
    for r in records:
        row = {
            "detector": r["detector"],
            "trained_on": r["train"]["name"],
            "tested_on": r["test"]["name"],
            "perturbation": r["perturbation"]["label"],
            "seed": r["seed"],
            "n_train_real": r["train"]["real"]["count"],
            "n_train_fake": r["train"]["fake"]["count"],
            "n_test_real": r["n_real"],
            "n_test_fake": r["n_fake"],
            "threshold": r["threshold"],
            "train_seconds": r["training"]["train_seconds"],
            "epochs": r["training"]["recipe"]["epochs"],
        }
        for name in METRICS:
            metric = r["metrics"][name]
            low, high = metric["ci"] if metric["ci"] else (None, None)
            row |= {name: metric["value"], f"{name}_ci_low": low, f"{name}_ci_high": high}
        row["record"] = f"records/{r['key']}.json"
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(
        ["trained_on", "tested_on", "perturbation", "accuracy"], ascending=[True, True, True, False]
    ).reset_index(drop=True)


def _with_interval(row: pd.Series, name: str) -> str:
    value, low, high = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if pd.isna(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def render_markdown(records: list[dict], title: str, description: str = "") -> str:
    """A Markdown leaderboard: provenance header, then one table per (training set, test source)."""
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
    provenance = [r["provenance"] for r in records]
    trained = {describe_hardware(r["training"]["trained_on"]) for r in records}
    scored = {describe_hardware(p["hardware"]) for p in provenance}
    commands = "; ".join(sorted({f"`{p['command']}`" for p in provenance}))
    commits = {f"{p['git']['commit'] or 'unknown'}{' (dirty)' if p['git']['dirty'] else ''}" for p in provenance}
    lines += [
        f"- Trained on: {'; '.join(sorted(trained))}",
        f"- Scored on: {'; '.join(sorted(scored))}",
        f"- Command: {commands}",
        f"- Git commit: {', '.join(sorted(commits))}",
        f"- torch {provenance[0]['versions']['torch']}, timm {provenance[0]['versions']['timm']}, "
        f"scikit-learn {provenance[0]['versions']['scikit-learn']}",
        f"- Seeds: {', '.join(str(s) for s in sorted(frame['seed'].unique()))}; "
        f"bootstrap resamples: {records[0]['bootstrap']['resamples']}",
        "",
    ]
    for (trained_on, tested_on), group in frame.groupby(["trained_on", "tested_on"], sort=True):
        first = group.iloc[0]
        lines += [
            f"## Trained on {trained_on} ({first['n_train_real']} real + {first['n_train_fake']} fake images), "
            f"tested on {tested_on} ({first['n_test_real']} real vs {first['n_test_fake']} fake)",
            "",
        ]
        table = pd.DataFrame({
            "Detector": group["detector"],
            "Perturbation": group["perturbation"],
            "Seed": group["seed"],
            **{label: group.apply(_with_interval, axis=1, name=name) for name, label in SHOWN.items()},
            "Train s": group["train_seconds"].map(lambda s: f"{s:.0f}"),
            "Epochs": group["epochs"],
            "Record": group["record"].map(lambda p: f"[json]({p})"),
        })
        lines += [table.to_markdown(index=False), ""]
    return "\n".join(lines)


def write_leaderboard(
    records: list[dict], out_dir: Path, title: str, description: str = ""
) -> dict[str, Path]:
    """Write ``leaderboard.md`` and ``leaderboard.csv`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    paths = {"markdown": out_dir / "leaderboard.md", "csv": out_dir / "leaderboard.csv"}
    write_atomic(paths["markdown"], render_markdown(records, title, description).encode())
    write_atomic(paths["csv"], records_frame(records).to_csv(index=False).encode())
    return paths
