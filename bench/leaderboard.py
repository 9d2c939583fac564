"""Leaderboards rendered from result records (never edited by hand): Markdown, CSV, JSON and figures.

Every view reads one aggregate per cell over its training seeds (:func:`bench.compare.aggregate`): the mean
over seeds, the standard deviation across them, and an interval that says what it covers (a two-level
bootstrap over seeds and test images; the test images only with one seed). The files:

- ``leaderboard.csv`` / ``.json``: one row per cell over its seeds: each metric's mean (``accuracy``), interval
  (``accuracy_ci_low``, ``accuracy_ci_high``) and standard deviation across seeds (``accuracy_std``), with
  ``n_seeds``, ``seeds``, ``interval`` (what the intervals cover), ``ap_chance`` and ``records``.
- ``leaderboard-seeds.csv`` / ``.json``: one row per record, i.e. per seed, with the interval stored in it.
- ``leaderboard-comparisons.csv`` / ``.json``: detectors compared pairwise on the same test images
  (:func:`bench.compare.compare_detectors`).
- ``leaderboard-generalization.csv`` / ``.json`` and ``leaderboard-generalization-comparisons.*``: where tagged
  test sources include generator families a training set has not seen, the generalization view
  (:mod:`bench.generalization`).
- ``leaderboard.md``, ``leaderboard.html`` and ``figures/*.png``.

Cells of a job that failed (``failures/`` in the results folder) are rows whose numbers read "failed", with the
reason, never a number. In Markdown every string a user or a record gave (suite description, names, arguments,
labels, reasons) is made inert: backslashes, ``|``, ``<``, ``>`` and backticks cannot end a table cell, open
HTML or a code span.

Besides one detailed table per (training set, test source), the Markdown has, where the records call for
them: a cross-source matrix (rows = what a detector was trained on, columns = what it was tested on) with its
heatmaps, the detector comparisons, robustness tables (a metric per perturbation level) with robustness
curves, and the attribution scores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench import figures
from bench.compare import COMPARED, Aggregate, Comparison, aggregate, compare_detectors, stored_metric
from bench.files import write_atomic
from bench.generalization import Generalization, generalization
from bench.metrics import METRICS
from bench.provenance import summarise_provenance
from bench.records import canonical_kwargs, evaluate_only, metric_text

SHOWN = {
    "accuracy": "Acc",
    "balanced_accuracy": "Bal acc",
    "f1": "F1",
    "roc_auc": "AUC",
    "average_precision": "AP",
    "accuracy_real": "Acc real",
    "accuracy_fake": "Acc fake",
}
SPREAD = {"balanced_accuracy": "Bal acc sd", "roc_auc": "AUC sd"}  # the std across seeds shown in tables
ROBUSTNESS = {"accuracy": "Acc", "balanced_accuracy": "Bal acc", "roc_auc": "AUC", "evasion_rate": "Evasion"}
MATRIX = {"roc_auc": "AUC", "accuracy_fake": "Acc fake"}  # AP depends on each source's share of fakes
ATTRIBUTION = {
    "faithfulness": "Faithfulness",
    "faithfulness_shuffled": "Shuffled map",
    "faithfulness_random_weights": "Random weights",
    "randomisation_spearman": "Randomisation rho",
    "centre_share_real": "Centre share real",
    "centre_share_fake": "Centre share fake",
    "centre_share_random_weights": "Centre share random weights",
}
BELOW_CHANCE = "⚠"
FAILED = "failed"  # the text of a failed job's numbers; its frame rows' "interval" starts with it
MARKDOWN_INERT = str.maketrans({"\\": "\\\\", "|": "\\|", "<": "&lt;", ">": "&gt;", "`": "\\`",
                                "\n": " ", "\r": " "})
EVALUATE_ONLY = "†"  # after the name of a detector trained elsewhere and only scored here
BELOW_CHANCE_NOTE = (f"{BELOW_CHANCE} below chance: the whole AUC interval lies below 0.5 (the value itself where "
                     "there is no interval), so these fakes look more real to the detector than the reals do.")
READING = (
    "Each number is a mean over the cell's training seeds with its interval in brackets; the note above each "
    "table says what the intervals cover: with several seeds a t interval whose variance adds the variance across "
    "seeds over their number (known to seeds − 1 degrees of freedom) to the test-image bootstrap variance the "
    "seeds share (its coverage with 3 and 5 seeds is measured by simulation: `benchmarks/coverage.py`, figures in "
    "the README's Statistics section); with one seed the bootstrap over test images only, which does not cover "
    "retraining. "
    "A proportion whose resamples all agree (as at 0 or 1) gets Wilson's "
    "score interval instead; any other number without an interval had no spread in its resamples, left its own value "
    "out of its percentile interval (tied resamples, as for AP at an AUC near 0) or, for balanced "
    "accuracy, comes from a record that predates it and has no score file. The decision "
    "threshold was chosen on validation data carved from the training sources. AP is shown beside its chance "
    "level, the share of fakes among the test images."
)


@dataclass(frozen=True)
class Leaderboard:
    """What every view of a leaderboard is rendered from: the records, one row per cell aggregated over seeds
    (``cells``), one row per record (``seeds``) and the pairwise detector comparisons."""

    records: list[dict]
    cells: pd.DataFrame
    seeds: pd.DataFrame
    comparisons: pd.DataFrame
    generalization: Generalization | None = None  # where tagged test sources include unseen generator families


def build_leaderboard(records: list[dict], root: Path, failures: Sequence[dict] = ()) -> Leaderboard:
    """Aggregate ``records`` over seeds and compare their detectors, reading score files from the results folder
    ``root``; two records for one cell identity are an error. The cells of ``failures`` (failed jobs, as
    :func:`bench.publish.load_failures` gives them) are rows of the cells frame that read "failed"."""
    aggregates = aggregate(records, root)
    cells = cells_frame(aggregates)
    if failures:
        cells = _sorted(pd.concat([cells, failed_frame(failures)], ignore_index=True), "balanced_accuracy")
    return Leaderboard(list(records), cells, records_frame(records),
                       comparisons_frame(compare_detectors(aggregates)), generalization(aggregates))


def _perturbation_order(record: dict) -> int:
    """Position of the record's perturbation in its suite (0 for records that do not carry their suite)."""
    listed = record.get("suite_config", {}).get("perturbations", [])
    wanted = {k: record["perturbation"][k] for k in ("name", "params")}
    return next((i for i, p in enumerate(listed) if p == wanted), 0)


def _described(record: dict) -> dict:
    """The columns that say what a record measured, shared by the per-cell and per-seed frames."""
    kwargs = canonical_kwargs(record.get("detector_kwargs", {}))
    name = record["detector"] if kwargs == "{}" else f"{record['detector']} {kwargs}"
    elsewhere = evaluate_only(record)
    return {
        "detector": record["detector"],
        "kwargs": kwargs,
        "name": f"{name} {EVALUATE_ONLY}" if elsewhere else name,
        "weights": elsewhere or "",  # evaluate-only: weights from FILE (sha256), not trained here
        "trained_on": record["train"]["name"],
        "tested_on": record["test"]["name"],
        "perturbation": record["perturbation"]["label"],
        "family": record["perturbation"]["name"],
        "level_order": _perturbation_order(record),
    }


def _sorted(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Rows in table order: training set, test source, perturbation (suite order), then ``by``, best first."""
    if frame.empty:
        return frame
    frame = frame.assign(level=[_level(frame, row) for _, row in frame.iterrows()])
    return frame.sort_values(["trained_on", "tested_on", "level_order", "perturbation", by, "name"],
                             ascending=[True, True, True, True, False, True]).reset_index(drop=True)


def cells_frame(aggregates: list[Aggregate]) -> pd.DataFrame:
    """One row per cell over its training seeds: each metric's mean, interval and standard deviation across seeds."""
    rows = []
    for one in aggregates:
        first = one.records[0]
        row = _described(first) | {
            "n_seeds": len(one.records),
            "seeds": " ".join(str(seed) for seed in one.seeds),
            "interval": one.covers,
            "n_train_real": first["train"]["real"]["count"],
            "n_train_fake": first["train"]["fake"]["count"],
            "n_test_real": first["n_real"],
            "n_test_fake": first["n_fake"],
            "ap_chance": one.prevalence,
        }
        for name in [*METRICS, "evasion_rate"]:
            metric = one.metrics.get(name, {"mean": None, "ci": None, "std": None})
            low, high = metric["ci"] or (None, None)
            row |= {name: metric["mean"], f"{name}_ci_low": low, f"{name}_ci_high": high, f"{name}_std": metric["std"]}
        row |= {
            "train_seconds": float(np.mean([r["training"]["train_seconds"] for r in one.records])),
            "epochs": first["training"].get("recipe", {}).get("epochs"),  # none for weights trained elsewhere
            "records": " ".join(f"records/{r['key']}.json" for r in one.records),
        }
        rows.append(row)
    return _sorted(pd.DataFrame(rows), "balanced_accuracy")


def failed_frame(failures: Sequence[dict]) -> pd.DataFrame:
    """One row per cell of each failed job, shaped like :func:`cells_frame`'s: no numbers, the reason in
    ``interval`` ("failed: ..."), the failure file in ``records``."""
    rows = []
    for failure in failures:
        kwargs = canonical_kwargs(failure.get("detector_kwargs", {}))
        for cell in failure["cells"]:
            perturbation = cell["perturbation"]
            row = {
                "detector": failure["detector"], "kwargs": kwargs,
                "name": failure["detector"] if kwargs == "{}" else f"{failure['detector']} {kwargs}", "weights": "",
                "trained_on": failure["train"], "tested_on": cell["test"], "perturbation": perturbation["label"],
                "family": perturbation["name"], "level_order": cell["level_order"], "n_seeds": 1,
                "seeds": str(failure["seed"]), "interval": f"{FAILED}: {failure['reason']}",
                "n_train_real": failure["n_train"]["real"], "n_train_fake": failure["n_train"]["fake"],
                "n_test_real": cell["n_real"], "n_test_fake": cell["n_fake"],
                "ap_chance": cell["n_fake"] / (cell["n_real"] + cell["n_fake"]),
            }
            for name in [*METRICS, "evasion_rate"]:
                row |= dict.fromkeys((name, f"{name}_ci_low", f"{name}_ci_high", f"{name}_std"), float("nan"))
            rows.append(row | {"train_seconds": float("nan"), "epochs": failure.get("epochs"),
                               "records": failure["file"]})
    return pd.DataFrame(rows)


def failed(frame: pd.DataFrame) -> pd.Series:
    """Which rows of a cells frame are cells of failed jobs."""
    return frame["interval"].astype(str).str.startswith(f"{FAILED}:") if not frame.empty else pd.Series(dtype=bool)


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record (per seed): what was measured, each metric with the interval stored in the record."""
    rows = []
    for r in records:
        row = _described(r) | {
            "seed": r["seed"],
            "n_train_real": r["train"]["real"]["count"],
            "n_train_fake": r["train"]["fake"]["count"],
            "n_test_real": r["n_real"],
            "n_test_fake": r["n_fake"],
            "threshold": r["threshold"],
            "train_seconds": r["training"]["train_seconds"],
            "epochs": r["training"].get("recipe", {}).get("epochs"),
        }
        for name in [*METRICS, "evasion_rate"]:
            value, ci = stored_metric(r, name)
            low, high = ci or (None, None)
            row |= {name: value, f"{name}_ci_low": low, f"{name}_ci_high": high}
        row["record"] = f"records/{r['key']}.json"
        rows.append(row)
    return _sorted(pd.DataFrame(rows), "balanced_accuracy")


def comparisons_frame(comparisons: list[Comparison]) -> pd.DataFrame:
    """One row per pair of detectors compared on one (training set, test source, perturbation)."""
    rows = []
    for c in comparisons:
        row = {key: value for key, value in _described(c.a.records[0]).items()
               if key in ("trained_on", "tested_on", "perturbation", "level_order")}
        row |= {"a": c.a.cell.name, "b": c.b.cell.name, "seeds_a": " ".join(map(str, c.a.seeds)),
                "seeds_b": " ".join(map(str, c.b.seeds)), "test": c.test}
        for name in COMPARED:
            metric = c.metrics.get(name, {})
            low, high = metric.get("ci") or (None, None)
            row |= {f"{name}_a": c.a.metrics[name]["mean"], f"{name}_b": c.b.metrics[name]["mean"],
                    f"{name}_difference": metric.get("difference"), f"{name}_ci_low": low, f"{name}_ci_high": high,
                    f"{name}_p_value": metric.get("p_value"), f"{name}_p_holm": metric.get("p_holm"),
                    f"{name}_significant": metric.get("significant")}
        row["roc_auc_delong_p"] = c.metrics.get("roc_auc", {}).get("delong_p")
        row["verdict"] = c.verdict
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["trained_on", "tested_on", "level_order", "perturbation"], kind="stable")\
        .reset_index(drop=True)


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


def _missing(value: object) -> bool:
    return value is None or bool(pd.isna(value))


def digits(ci: tuple[float, float] | list[float] | None) -> int:
    """Decimals to print a number and its interval with: 3, or up to 6 while the bounds would print alike."""
    places = 3
    while ci and ci[0] != ci[1] and places < 6 and round(ci[0], places) == round(ci[1], places):
        places += 1
    return places


def interval_text(value: float, ci: tuple[float, float] | list[float] | None) -> str:
    """``0.871 [0.855, 0.886]``: the value with its interval, with enough decimals that the bounds print apart;
    a zero-width interval (no spread in the resamples) is left out."""
    ci = None if ci is None or ci[0] == ci[1] else ci
    return metric_text(value, ci, digits(ci))


def cell_text(row: pd.Series, name: str) -> str:
    """A metric of a frame row as tables print it, ``0.871 [0.855, 0.886]``, with :data:`BELOW_CHANCE` after an
    AUC below 0.5; "–" where there is none."""
    value, low, high = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if _missing(value):
        interval = str(row.get("interval", ""))
        return "not applicable" if interval.startswith("not applicable") else FAILED if interval.startswith(
            f"{FAILED}:") else "–"
    text = interval_text(value, None if _missing(low) else (low, high))
    return f"{text} {BELOW_CHANCE}" if name == "roc_auc" and flagged_below_chance(row) else text


def flagged_below_chance(row: pd.Series) -> bool:
    """The AUC of a frame row is below chance: its interval's upper bound (its value, without one) is below 0.5."""
    high = row["roc_auc"] if _missing(row["roc_auc_ci_high"]) else row["roc_auc_ci_high"]
    return bool(high < 0.5)


def _spread_text(value: object) -> str:
    return "–" if _missing(value) else f"{value:.3f}"


def difference_text(metric: str, row: pd.Series) -> str:
    """A compared difference with its interval, ``+0.021 [+0.004, +0.037]``, in bold when the interval excludes 0."""
    value, low, high = row[f"{metric}_difference"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if _missing(value):
        return "–"
    text = f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"
    significant = row.get(f"{metric}_significant")
    return f"**{text}**" if not _missing(significant) and bool(significant) else text


P_FLOOR = 1e-6  # smaller p-values print as "< 1e-06": the t approximation says nothing further out in its tail


def p_text(value: object) -> str:
    """A p-value: 3 decimals, 2 significant digits below 0.001, "< 1e-06" below :data:`P_FLOOR`; "n/a" for NaN."""
    if value is None:
        return "–"
    if pd.isna(value):
        return "n/a"
    return f"< {P_FLOOR:g}" if value < P_FLOOR else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def verdict(row: pd.Series, metric: str = "roc_auc") -> str:
    """The comparison's verdict (:func:`bench.compare.verdict_text`, from Holm-adjusted p-values); "–" where the
    pair was not compared."""
    text = row.get("verdict")
    return "–" if _missing(text) or _missing(row[f"{metric}_difference"]) else str(text)


def covers_note(frame: pd.DataFrame) -> str:
    """What the numbers of a table are and what their intervals cover (one clause per kind of cell in it)."""
    return "Numbers: " + "; ".join(dict.fromkeys(frame.loc[~failed(frame), "interval"])) + "."


def below_chance(frame: pd.DataFrame) -> bool:
    """Some AUC of the frame is flagged below chance (:func:`flagged_below_chance`)."""
    return any(flagged_below_chance(row) for _, row in frame.iterrows() if not _missing(row["roc_auc"]))


def _slug(*parts: str) -> str:
    return "-".join(p.replace("/", "_").replace(" ", "_") for p in parts)


def _has_matrix(frame: pd.DataFrame) -> bool:
    clean = frame[frame["family"] == "clean"]
    return clean["trained_on"].nunique() > 1 or clean["tested_on"].nunique() > 1


def figure_files(frame: pd.DataFrame) -> dict[str, bytes]:
    """The leaderboard's PNG figures by path relative to its folder: heatmaps and robustness curves, drawn from
    the per-cell frame (means over seeds, with their intervals)."""
    out: dict[str, bytes] = {}
    if frame.empty:
        return out
    over = "mean over training seeds" if (frame["n_seeds"] > 1).any() else "one training seed"
    if _has_matrix(frame):
        clean = frame[frame["family"] == "clean"]
        for metric, label in MATRIX.items():
            out[f"figures/{_slug('cross-source', metric)}.png"] = figures.cross_source_heatmap(
                clean, metric, label, f"Cross-source {label} on clean test images ({over})"
            )
    if (frame["family"] != "clean").any():
        for (trained_on, tested_on), group in frame.groupby(["trained_on", "tested_on"], sort=True):
            for metric in ("accuracy", "roc_auc"):
                out[f"figures/{_slug('robustness', trained_on, tested_on, metric)}.png"] = figures.robustness_curves(
                    group, metric, ROBUSTNESS[metric], f"Trained on {trained_on}, tested on {tested_on} ({over})"
                )
    return out


def matrix_tables(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The cross-source matrix as text tables, one per metric of :data:`MATRIX` (none without a matrix)."""
    if frame.empty or not _has_matrix(frame):
        return []
    clean = frame[frame["family"] == "clean"]
    order = list(dict.fromkeys(clean["tested_on"]))
    return [(label, _pivot(clean, ["name", "trained_on"], "tested_on", metric, order))
            for metric, label in MATRIX.items()]


def _pivot(frame: pd.DataFrame, index: list[str], columns: str, metric: str, order: list[str]) -> pd.DataFrame:
    shown = frame.assign(shown=[cell_text(row, metric) for _, row in frame.iterrows()])
    table = shown.pivot(index=index, columns=columns, values="shown")
    table = table.reindex(columns=order).fillna("–").reset_index()
    table.columns.name = None
    return table.rename(columns={"name": "Detector", "trained_on": "Trained on"})


MATRIX_NOTE = ("Clean test images. Rows: the detector and what it was trained on; columns: the fake test source, each "
               "scored against the same real test images.")


def _matrix_section(frame: pd.DataFrame) -> list[str]:
    tables = matrix_tables(frame)
    if not tables:
        return []
    clean = frame[frame["family"] == "clean"]
    lines = ["## Cross-source matrix", "", f"{MATRIX_NOTE} {covers_note(clean)}", ""]
    for (label, table), metric in zip(tables, MATRIX, strict=True):
        lines += [f"### {label}", "", table.to_markdown(index=False), "",
                  f"![{label} heatmap](figures/{_slug('cross-source', metric)}.png)", ""]
    if below_chance(clean):
        lines += [BELOW_CHANCE_NOTE, ""]
    return lines


COMPARISON_NOTE = (
    "Each pair of detectors scored on the same test images (equal sha256 of the real and "
    "of the fake test images), A the one with the higher mean AUC. A − B is the difference of the means over "
    "training seeds with its 95% interval: its variance adds the paired bootstrap variance over test images "
    "(every resample scores both detectors on the same draw) and, with several seeds, the variance of the per-seed "
    "differences over their number (seeds paired by seed number when both have the same seeds), which is known to "
    "seeds − 1 degrees of freedom only (a generalised t); with one seed each it covers the test images only, and "
    "DeLong's test is added for AUC (n/a with fewer than 2 images in a class). p (Holm): the two-sided p-value of no "
    "difference, adjusted by Holm's method across every pair and both metrics of the table, so that each table "
    "calls a false winner with probability 5% at most; a difference in bold is significant after that adjustment. "
    "The verdict comes from the adjusted p-values, names a metric that disagrees, and calls no detector better "
    "where both mean AUCs are below 0.5. Overlapping marginal intervals in the tables above do not mean two "
    "detectors cannot be told apart."
)


def comparison_tables(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The detector comparisons made, as text tables, one per (training set, test source, perturbation)."""
    compared = frame[frame["roc_auc_difference"].notna()] if not frame.empty else frame
    if compared.empty:
        return []
    tables = []
    delong = compared["roc_auc_delong_p"].notna().any()
    for (trained_on, tested_on, _, perturbation), group in compared.groupby(
            ["trained_on", "tested_on", "level_order", "perturbation"], sort=True):
        rows = list(group.iterrows())
        table = {"A": group["a"], "B": group["b"]}
        for name, label in COMPARED.items():
            table[f"{label} A − B"] = [difference_text(name, row) for _, row in rows]
            table[f"{label} p (Holm)"] = group[f"{name}_p_holm"].map(p_text)
            if name == "roc_auc" and delong:
                table["AUC DeLong p"] = group["roc_auc_delong_p"].map(p_text)
        table |= {"Verdict": [verdict(row) for _, row in rows], "Test": group["test"]}
        tables.append((f"Trained on {trained_on}, tested on {tested_on}, {perturbation}", pd.DataFrame(table)))
    return tables


def not_compared(frame: pd.DataFrame) -> str:
    """A sentence counting the pairs of detectors that could not be compared, by reason ("" when none)."""
    if frame.empty:
        return ""
    reasons = frame.loc[frame["roc_auc_difference"].isna(), "test"].value_counts(sort=False)
    return " ".join(f"{count} pair{'s' if count != 1 else ''} {reason}." for reason, count in reasons.items())


def _comparison_section(frame: pd.DataFrame) -> list[str]:
    tables, skipped = comparison_tables(frame), not_compared(frame)
    if not tables and not skipped:
        return []
    lines = ["## Which detector is better", "", f"{COMPARISON_NOTE} {skipped}".strip(), ""]
    for heading, table in tables:
        lines += [f"### {heading}", "", table.to_markdown(index=False, disable_numparse=True), ""]
    return lines


def _robustness_section(frame: pd.DataFrame) -> list[str]:
    if not (frame["family"] != "clean").any():
        return []
    lines = [
        "## Robustness",
        "",
        "One column per perturbation, in suite order. Evasion: the share of the fakes detected on clean input "
        f'that the perturbation turns into "real". {covers_note(frame)}',
        "",
    ]
    for (trained_on, tested_on), group in frame.groupby(["trained_on", "tested_on"], sort=True):
        order = list(dict.fromkeys(group.sort_values("level_order", kind="stable")["perturbation"]))
        lines += [f"### Trained on {trained_on}, tested on {tested_on}", ""]
        for metric, label in ROBUSTNESS.items():
            if group[metric].notna().any():
                lines += [f"**{label}**", "", _pivot(group, ["name"], "perturbation", metric, order)
                          .to_markdown(index=False), ""]
        lines += [f"![{ROBUSTNESS[m]} curves](figures/{_slug('robustness', trained_on, tested_on, m)}.png)"
                  for m in ("accuracy", "roc_auc")]
        lines.append("")
    if below_chance(frame):
        lines += [BELOW_CHANCE_NOTE, ""]
    return lines


def attribution_table(records: list[dict]) -> tuple[str, pd.DataFrame] | None:
    """The attribution scores of the records that have them (an explanation and one row per method)."""
    explained = sorted((r for r in records if "methods" in (r.get("attribution") or {})),
                       key=lambda r: (r["train"]["name"], r["detector"], r["seed"]))
    if not explained:
        return None
    first = explained[0]["attribution"]
    note = (
        f"Means over {first['images']['real']} real and {first['images']['fake']} fake test images per detector, "
        "with bootstrap 95% intervals. Faithfulness: insertion AUC minus deletion AUC (higher is better); "
        "shuffled map: the same score for the trained model with each map's pixels randomly permuted, the level "
        "a map must beat; random weights: the same score for the architecture with its initial random weights. "
        "Randomisation rho: rank correlation of the trained and random-weight maps (lower: the maps depend on what "
        "was learned). Centre share: attribution mass in the central square, which is "
        f"{first['centre_area_share']:.0%} of the image; above that, the detector looks at the object rather than "
        "the background. Centre share random weights: the same for the random-weight maps of the same images, the "
        "share owed to the method and architecture before training. – where a record predates a score."
    )
    rows = []
    for r in explained:
        for method, scores in r["attribution"]["methods"].items():
            row = {"Detector": r["detector"], "Trained on": r["train"]["name"], "Seed": r["seed"], "Method": method}
            for key, label in ATTRIBUTION.items():
                row[label] = interval_text(scores[key]["value"], scores[key]["ci"]) if key in scores else "–"
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


def cell_heading(first: pd.Series) -> str:
    """The heading of the table of one (training set, test source): what was trained on and tested on, and how
    many images."""
    return (f"Trained on {first['trained_on']} ({first['n_train_real']} real + {first['n_train_fake']} fake images), "
            f"tested on {first['tested_on']} ({first['n_test_real']} real vs {first['n_test_fake']} fake)")


def cell_note(group: pd.DataFrame) -> str:
    """The note above a table of cells: what its numbers and intervals cover and how its rows are sorted."""
    spread = " sd: the standard deviation across training seeds." if (group["n_seeds"] > 1).any() else ""
    return (f"{covers_note(group)}{spread} Rows: perturbations in suite order, then by balanced accuracy (which, "
            "unlike accuracy, does not reward calling everything the larger class).")


def spread_columns(frame: pd.DataFrame) -> dict[str, str]:
    """The std-across-seeds columns to show: none unless some cell has several seeds."""
    return SPREAD if (frame["n_seeds"] > 1).any() else {}


def _cell_tables(frame: pd.DataFrame) -> list[str]:
    lines = ["## Every cell", ""]
    spread = spread_columns(frame)
    for _, group in frame.groupby(["trained_on", "tested_on"], sort=True):
        rows = list(group.iterrows())
        table = {"Detector": group["name"], "Perturbation": group["perturbation"],
                 "Seeds": group["seeds"].str.replace(" ", ", ")}
        for name, label in SHOWN.items():
            table[label] = [cell_text(row, name) for _, row in rows]
            if name in spread:
                table[spread[name]] = group[f"{name}_std"].map(_spread_text)
            if name == "average_precision":
                table["AP chance"] = group["ap_chance"].map(lambda p: f"{p:.3f}")
        if group["evasion_rate"].notna().any():
            table["Evasion"] = [cell_text(row, "evasion_rate") for _, row in rows]
        table |= {
            "Train s": ["–" if row["weights"] or _missing(row["train_seconds"]) else f"{row['train_seconds']:.0f}"
                        for _, row in rows],
            "Epochs": ["–" if _missing(row["epochs"]) else int(row["epochs"]) for _, row in rows],
            "Records": [" ".join(f"[{seed}]({path})" for seed, path in zip(row["seeds"].split(), row["records"].split(),
                                                                         strict=True)) for _, row in rows],
        }
        lines += [f"### {cell_heading(group.iloc[0])}", "", cell_note(group), "",
                  pd.DataFrame(table).to_markdown(index=False, disable_numparse=True), ""]
        if below_chance(group):
            lines += [BELOW_CHANCE_NOTE, ""]
    return lines


def _sources_section(records: list[dict], root: Path | None) -> list[str]:
    """Per test source: its count, encoding and card (sample grid and spectrum), where the run drew cards."""
    from bench.spectrum import card_path, source_card_markdown

    sources: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: r["test"]["name"]):
        for side in ("real", "fake"):
            for info in r["test"][side]["sources"]:
                sources.setdefault(info["name"], info)
    reference = records[0]["test"]["real"]["sources"][0]["name"]
    if root is None or not all((Path(root) / card_path(name)).is_file() for name in sources):
        return []
    return source_card_markdown({reference: sources.pop(reference), **sources}, reference)


def _budgets(records: list[dict]) -> str:
    """Each detector's grid size, e.g. ``1 (no grid) for every detector`` or ``lenet 1, cifake-cnn 4``."""
    sizes = {r["detector"]: max(1, len(r["training"].get("grid", []))) for r in records}
    if len(set(sizes.values())) == 1:
        size = next(iter(sizes.values()))
        return f"{size}{' (no grid)' if size == 1 else ''} for every detector"
    return ", ".join(f"{name} {size}" for name, size in sorted(sizes.items())) + " (unequal budgets)"


def _evaluate_only_lines(records: list[dict]) -> list[str]:
    """One header line per detector trained elsewhere (marked :data:`EVALUATE_ONLY`): its weights and threshold rule."""
    found = {(r["detector"], evaluate_only(r), r["training"].get("threshold_rule", "")): None
             for r in records if evaluate_only(r)}
    return [f"- {EVALUATE_ONLY} {detector}: evaluate-only, {note}; threshold {rule}" for detector, note, rule in found]


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


def markdown_safe(board: Leaderboard) -> Leaderboard:
    """The board with every string of its records and frames made :func:`inert`, for Markdown only."""
    return replace(board, records=[_inert_value(r) for r in board.records], cells=board.cells.map(_inert_value),
                   seeds=board.seeds.map(_inert_value), comparisons=board.comparisons.map(_inert_value))


def code_span(text: str) -> str:
    """``text`` as a Markdown code span that no backtick in it can close (on one line)."""
    text = " ".join(text.splitlines())
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _failures_section(frame: pd.DataFrame) -> list[str]:
    """One line per failed job (its reason and its failure file), where there are any."""
    if frame.empty or not failed(frame).any():
        return []
    jobs = frame[failed(frame)].groupby(["name", "trained_on", "seeds", "interval", "records"], sort=True).size()
    lines = ["## Failed jobs", "", f"These jobs failed: their cells read \"{FAILED}\" below, not a number. Rerun the "
             "suite once the cause is fixed; the other cells are kept.", ""]
    lines += [f"- {name} on {trained_on}, seed {seed}, {cells} cell{'s' if cells != 1 else ''}: "
              f"{interval.removeprefix(FAILED + ': ')} ([why]({path}))"
              for (name, trained_on, seed, interval, path), cells in jobs.items()]
    return [*lines, ""]


def render_markdown(board: Leaderboard, title: str, description: str = "", root: Path | None = None) -> str:
    """A Markdown leaderboard: provenance header, summary sections, then one table per (training, test) pair;
    with the results folder ``root``, a section of source cards where the run drew them. Every string from the
    records, the title and the description is made :func:`inert`."""
    commands = summarise_provenance(board.records)["commands"] if board.records else []
    board = markdown_safe(board)
    records, frame = board.records, board.cells
    lines = [f"# Leaderboard: {inert(title)}", ""]
    if description:
        lines += [inert(description.strip(), inline=False), ""]
    lines += [f"Rendered from {len(records)} result records in `records/` (one JSON per cell and training seed); do "
              "not edit by hand. Per-seed values: `leaderboard-seeds.csv`.", "", READING, ""]
    if not records:
        return "\n".join([*lines, *_failures_section(frame), "No records."]) + "\n"
    made = summarise_provenance(records)
    lines += [
        f"- Trained on: {'; '.join(made['trained_on'])}",
        f"- Scored on: {'; '.join(made['scored_on'])}",
        f"- Command: {'; '.join(code_span(c) for c in commands)}",
        f"- Git commit: {', '.join(made['commits'])}",
        f"- {'; '.join(made['versions'])}",
        f"- Seeds: {', '.join(made['seeds'])}; bootstrap resamples: {', '.join(made['bootstrap'])}",
        f"- Hyperparameter budget (grid points chosen on validation): {_budgets(records)}",
        *_evaluate_only_lines(records),
        "",
    ]
    lines += _failures_section(frame)
    lines += board.generalization.markdown(inert) if board.generalization else []
    lines += _matrix_section(frame) + _comparison_section(board.comparisons) + _source_attribution_section(records)
    lines += _robustness_section(frame) + _attribution_section(records) + _sources_section(records, root)
    lines += _cell_tables(frame)
    return "\n".join(lines)


TABLES = {"leaderboard": "cells", "leaderboard-seeds": "seeds", "leaderboard-comparisons": "comparisons"}


def write_leaderboard(
    records: list[dict], out_dir: Path, title: str, description: str = "", failures: Sequence[dict] = ()
) -> dict[str, Path]:
    """Write the leaderboard of ``records`` (whose score files lie under ``out_dir``) and of the cells of the failed
    jobs ``failures`` into ``out_dir``: Markdown, HTML, the CSV and JSON tables of :data:`TABLES` (see the module
    docstring) and ``figures/*.png``; returns the files' paths ("markdown", "html", "csv", "json", "seeds_csv",
    "seeds_json", "comparisons_csv", ...)."""
    from bench.html import render_html  # imported here: bench.html renders this module's frames

    out_dir = Path(out_dir)
    board = build_leaderboard(records, out_dir, failures)
    views = board.generalization.figures() if board.generalization else {}
    measured = board.cells[~failed(board.cells)] if not board.cells.empty else board.cells
    for relative, picture in (figure_files(measured) | views).items():
        write_atomic(out_dir / relative, picture)
    paths = {"markdown": out_dir / "leaderboard.md", "html": out_dir / "leaderboard.html"}
    write_atomic(paths["markdown"], render_markdown(board, title, description, out_dir).encode())
    tables = {stem: (name, getattr(board, name)) for stem, name in TABLES.items()}
    tables |= board.generalization.frames() if board.generalization else {}
    for stem, (name, frame) in tables.items():
        for suffix, text in (("csv", frame.to_csv(index=False)),
                             ("json", frame.to_json(orient="records", indent=2, double_precision=15))):
            paths[suffix if name == "cells" else f"{name}_{suffix}"] = path = out_dir / f"{stem}.{suffix}"
            write_atomic(path, text.encode())
    write_atomic(paths["html"], render_html(board, out_dir, title, description).encode())  # after the figures
    return paths
