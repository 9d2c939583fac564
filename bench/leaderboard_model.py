"""The leaderboard's report model: what its tables hold, from result records (never edited by hand).

Every view reads one aggregate per cell over its training seeds (:func:`bench.compare.aggregate`): the mean over
seeds, the standard deviation across them, and an interval that says what it covers (a t interval over seeds and
test images; the test images only with one seed). :func:`build_leaderboard` makes the :class:`Leaderboard` the
renderers read (:mod:`bench.leaderboard_markdown`, :mod:`bench.leaderboard_html`, the files of
:mod:`bench.leaderboard`): the frames written as CSV and JSON (one row per cell, per record, per compared pair), and
the text tables, notes and headline both renderers print. Which metrics a table shows, with which label, chance
level and below-chance flag, comes from their declarations (:mod:`bench.metrics`); detectors are compared on the
suite's headline metrics (``headline_metrics``, default :data:`bench.metrics.DEFAULT_HEADLINE`).

Cells of a job that failed (``failures/`` in the results folder) are rows whose numbers read "failed", with the
reason, never a number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.compare import DELONG, Aggregate, Comparison, aggregate, compare_detectors, stored_metric
from bench.generalization import Generalization, best_macro_mean, generalization, generator_seen
from bench.integrity import ScoreFiles
from bench.metrics import REGISTRY, Metric, View, headline_metrics
from bench.records import Record, SourceDraw, canonical_kwargs, metric_text
from bench.spectrum import card_path

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


EVALUATE_ONLY = "†"  # after the name of a detector trained elsewhere and only scored here




def flagged_metrics() -> dict[str, Metric]:
    """The metrics whose values tables flag with :data:`BELOW_CHANCE` (``flags_below_chance``)."""
    return {name: declared for name, declared in REGISTRY.items() if declared.flags_below_chance}


def below_chance_note() -> str:
    """The footnote under a table with a value flagged below chance."""
    where = " or ".join(f"the whole {m.label} interval lies below {m.chance:g}" for m in flagged_metrics().values())
    return (f"{BELOW_CHANCE} below chance: {where} (the value itself where there is no interval), so these fakes look "
            "more real to the detector than the reals do.")


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


MATRIX_NOTE = ("Clean test images. Rows: the detector and what it was trained on; columns: the fake test source, each "
               "scored against the same real test images.")


def comparison_note(headline: Mapping[str, Metric]) -> str:
    """What the comparison tables hold, for the compared (headline) metrics."""
    first, count = next(iter(headline.values())), len(headline)
    metrics = "both metrics" if count == 2 else "the metric" if count == 1 else f"all {count} metrics"
    chance = " or ".join(f"{m.label} ({m.chance:g})" for m in headline.values() if m.chance is not None)
    return (
    "Each pair of detectors scored on the same test images (equal sha256 of the real and "
    f"of the fake test images), A the one with the {'higher' if first.higher_is_better else 'lower'} mean "
    f"{first.label}. A − B is the difference of the means over "
    "training seeds with its 95% interval: its variance adds the paired bootstrap variance over test images "
    "(every resample scores both detectors on the same draw) and, with several seeds, the variance of the per-seed "
    "differences over their number (seeds paired by seed number when both have the same seeds), which is known to "
    "seeds − 1 degrees of freedom only (a generalised t); with one seed each it covers the test images only, and "
    "DeLong's test is added for AUC (n/a with fewer than 2 images in a class). p (Holm): the two-sided p-value of no "
    f"difference, adjusted by Holm's method across every pair and {metrics} of the table, so that each table "
    "calls a false winner with probability 5% at most; a difference in bold is significant after that adjustment. "
    "The verdict comes from the adjusted p-values, names a metric that disagrees, and calls no detector better "
    f"where both means lie below chance on {chance}. Overlapping marginal intervals in the tables above do not "
    "mean two detectors cannot be told apart."
    )


SOURCE_ATTRIBUTION_NOTE = ("Detectors trained with one class per training source: the share of each test source's "
                           "images given each class (rows: true source, columns: predicted class; clean test "
                           "images).")


RANK_BY = "balanced_accuracy"  # rows of a table, best first (unlike accuracy, it does not reward the larger class)
P_FLOOR = 1e-6  # smaller p-values print as "< 1e-06": the t approximation says nothing further out in its tail


@dataclass(frozen=True)
class Leaderboard:
    """What every view of a leaderboard is rendered from: the records, one row per cell aggregated over seeds
    (``cells``), one row per record (``seeds``), the pairwise detector comparisons on the ``headline`` metrics and,
    with the results folder (``root``), its source cards."""

    records: list[Record]
    cells: pd.DataFrame
    seeds: pd.DataFrame
    comparisons: pd.DataFrame
    generalization: Generalization | None = None  # where tagged test sources include unseen generator families
    headline: dict[str, Metric] = field(default_factory=headline_metrics)
    root: Path | None = None
    aggregates: list[Aggregate] = field(default_factory=list)  # the cells over their seeds, for the headline


def suite_headline(records: Sequence[Record]) -> dict[str, Metric]:
    """The headline metrics the records' suite names (``headline_metrics``), else the default ones."""
    names = (records[0].suite_config or {}).get("headline_metrics") if records else None
    return headline_metrics(names)


def build_leaderboard(records: list[Record], root: Path, failures: Sequence[dict] = (),
                      scores: ScoreFiles | None = None) -> Leaderboard:
    """Aggregate ``records`` over seeds and compare their detectors on the suite's headline metrics, reading score
    files from the results folder ``root`` (through ``scores`` where given, to reuse what integrity checks read and
    resampled); two records for one cell identity are an error. The cells of ``failures`` (failed jobs, as
    :func:`bench.publish.load_failures` gives them) are rows of the cells frame that read "failed"."""
    scores = scores or ScoreFiles(root)
    headline = suite_headline(records)
    aggregates = aggregate(records, root, scores)
    cells = cells_frame(aggregates)
    if failures:
        cells = _sorted(pd.concat([cells, failed_frame(failures)], ignore_index=True), RANK_BY)
    comparisons = comparisons_frame(compare_detectors(aggregates, list(headline), scores.resamples), headline)
    return Leaderboard(list(records), cells, records_frame(records), comparisons, generalization(aggregates),
                       headline, Path(root), aggregates)


def _perturbation_order(record: Record) -> int:
    """Position of the record's perturbation in its suite (0 for records that do not carry their suite)."""
    listed = (record.suite_config or {}).get("perturbations", [])
    wanted = {"name": record.perturbation.name, "params": record.perturbation.params}
    return next((i for i, p in enumerate(listed) if p == wanted), 0)


def _described(record: Record) -> dict:
    """The columns that say what a record measured, shared by the per-cell and per-seed frames."""
    kwargs = canonical_kwargs(record.detector_kwargs)
    name = record.detector if kwargs == "{}" else f"{record.detector} {kwargs}"
    elsewhere = record.evaluate_only
    return {
        "detector": record.detector,
        "kwargs": kwargs,
        "name": f"{name} {EVALUATE_ONLY}" if elsewhere else name,
        "weights": elsewhere or "",  # evaluate-only: weights from FILE (sha256), not trained here
        "trained_on": record.train.name,
        "tested_on": record.test.name,
        "perturbation": record.perturbation.label,
        "family": record.perturbation.name,
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
            "n_train_real": first.train.real.count,
            "n_train_fake": first.train.fake.count,
            "n_test_real": first.n_real,
            "n_test_fake": first.n_fake,
            **_chance_levels(first.n_real, first.n_fake),
        }
        for name in REGISTRY:
            metric = one.metrics.get(name, {"mean": None, "ci": None, "std": None})
            low, high = metric["ci"] or (None, None)
            row |= {name: metric["mean"], f"{name}_ci_low": low, f"{name}_ci_high": high, f"{name}_std": metric["std"]}
        row |= {
            "train_seconds": float(np.mean([r.training.train_seconds for r in one.records])),
            "epochs": _epochs(first),
            "records": " ".join(f"records/{r.key}.json" for r in one.records),
        }
        rows.append(row)
    return _sorted(pd.DataFrame(rows), RANK_BY)


def _epochs(record: Record) -> int | None:
    """The epochs of the recipe the record's detector was trained with (None for weights trained elsewhere)."""
    return (record.training.recipe or {}).get("epochs")


def _chance_levels(n_real: int, n_fake: int) -> dict[str, float]:
    """The chance levels that depend on the test images (``chance_key`` columns, e.g. AP's ``ap_chance``)."""
    return {m.chance_key: m.chance_level(n_real, n_fake) for m in REGISTRY.values() if m.chance_key}


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
                **_chance_levels(cell["n_real"], cell["n_fake"]),
            }
            for name in REGISTRY:
                row |= dict.fromkeys((name, f"{name}_ci_low", f"{name}_ci_high", f"{name}_std"), float("nan"))
            rows.append(row | {"train_seconds": float("nan"), "epochs": failure.get("epochs"),
                               "records": failure["file"]})
    return pd.DataFrame(rows)


def failed(frame: pd.DataFrame) -> pd.Series:
    """Which rows of a cells frame are cells of failed jobs."""
    return frame["interval"].astype(str).str.startswith(f"{FAILED}:") if not frame.empty else pd.Series(dtype=bool)


def records_frame(records: list[Record]) -> pd.DataFrame:
    """One row per record (per seed): what was measured, each metric with the interval stored in the record."""
    rows = []
    for r in records:
        row = _described(r) | {
            "seed": r.seed,
            "n_train_real": r.train.real.count,
            "n_train_fake": r.train.fake.count,
            "n_test_real": r.n_real,
            "n_test_fake": r.n_fake,
            "threshold": r.threshold,
            "train_seconds": r.training.train_seconds,
            "epochs": _epochs(r),
        }
        for name in REGISTRY:
            value, ci = stored_metric(r, name)
            low, high = ci or (None, None)
            row |= {name: value, f"{name}_ci_low": low, f"{name}_ci_high": high}
        row["record"] = f"records/{r.key}.json"
        rows.append(row)
    return _sorted(pd.DataFrame(rows), RANK_BY)


def comparisons_frame(comparisons: list[Comparison], headline: Mapping[str, Metric]) -> pd.DataFrame:
    """One row per pair of detectors compared on one (training set, test source, perturbation) on the ``headline``
    metrics."""
    rows = []
    for c in comparisons:
        row = {key: value for key, value in _described(c.a.records[0]).items()
               if key in ("trained_on", "tested_on", "perturbation", "level_order")}
        row |= {"a": c.a.cell.name, "b": c.b.cell.name, "seeds_a": " ".join(map(str, c.a.seeds)),
                "seeds_b": " ".join(map(str, c.b.seeds)), "test": c.test}
        for name in headline:
            metric = c.metrics.get(name, {})
            low, high = metric.get("ci") or (None, None)
            row |= {f"{name}_a": c.a.metrics[name]["mean"], f"{name}_b": c.b.metrics[name]["mean"],
                    f"{name}_difference": metric.get("difference"), f"{name}_ci_low": low, f"{name}_ci_high": high,
                    f"{name}_p_value": metric.get("p_value"), f"{name}_p_holm": metric.get("p_holm"),
                    f"{name}_significant": metric.get("significant")}
        row[f"{DELONG}_delong_p"] = c.metrics.get(DELONG, {}).get("delong_p")
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


def missing(value: object) -> bool:
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
    """A metric of a frame row as tables print it, ``0.871 [0.855, 0.886]``, with :data:`BELOW_CHANCE` after a value
    flagged below chance (:func:`flagged_below_chance`); "–" where there is none."""
    value, low, high = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if missing(value):
        interval = str(row.get("interval", ""))
        return "not applicable" if interval.startswith("not applicable") else FAILED if interval.startswith(
            f"{FAILED}:") else "–"
    text = interval_text(value, None if missing(low) else (low, high))
    return f"{text} {BELOW_CHANCE}" if flagged_below_chance(row, name) else text


def flagged_below_chance(row: pd.Series, name: str) -> bool:
    """The metric ``name`` of a frame row is flagged below chance: it is one that tables flag
    (``flags_below_chance``) and its interval's upper bound (its value, without one) is below its chance level."""
    declared = REGISTRY.get(name)
    if declared is None or not declared.flags_below_chance or missing(row[name]):
        return False
    high = row[f"{name}_ci_high"]
    return declared.below_chance(row[name], None if missing(high) else high)


def spread_text(value: object) -> str:
    return "–" if missing(value) else f"{value:.3f}"


def difference_text(metric: str, row: pd.Series) -> str:
    """A compared difference with its interval, ``+0.021 [+0.004, +0.037]``, in bold when the interval excludes 0."""
    value, low, high = row[f"{metric}_difference"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if missing(value):
        return "–"
    text = f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"
    significant = row.get(f"{metric}_significant")
    return f"**{text}**" if not missing(significant) and bool(significant) else text


def p_text(value: object) -> str:
    """A p-value: 3 decimals, 2 significant digits below 0.001, "< 1e-06" below :data:`P_FLOOR`; "n/a" for NaN."""
    if value is None:
        return "–"
    if pd.isna(value):
        return "n/a"
    return f"< {P_FLOOR:g}" if value < P_FLOOR else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def verdict(row: pd.Series, metric: str) -> str:
    """The comparison's verdict (:func:`bench.compare.verdict_text`, from Holm-adjusted p-values); "–" where the
    pair was not compared."""
    text = row.get("verdict")
    return "–" if missing(text) or missing(row[f"{metric}_difference"]) else str(text)


def covers_note(frame: pd.DataFrame) -> str:
    """What the numbers of a table are and what their intervals cover (one clause per kind of cell in it)."""
    return "Numbers: " + "; ".join(dict.fromkeys(frame.loc[~failed(frame), "interval"])) + "."


def below_chance(frame: pd.DataFrame) -> bool:
    """Some value of the frame is flagged below chance (:func:`flagged_below_chance`)."""
    return any(flagged_below_chance(row, name) for _, row in frame.iterrows() for name in flagged_metrics())


def figure_slug(*parts: str) -> str:
    """A figure's file stem from its parts (training set, test source, metric...)."""
    return "-".join(p.replace("/", "_").replace(" ", "_") for p in parts)


def has_matrix(frame: pd.DataFrame) -> bool:
    """The clean cells span several training sets or test sources (a cross-source matrix)."""
    clean = frame[frame["family"] == "clean"]
    return clean["trained_on"].nunique() > 1 or clean["tested_on"].nunique() > 1


def matrix_tables(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """The cross-source matrix as text tables, one per metric shown in it (:func:`view_metrics`; none without a
    matrix): its label, the table and the path of its heatmap."""
    if frame.empty or not has_matrix(frame):
        return []
    clean = frame[frame["family"] == "clean"]
    order = list(dict.fromkeys(clean["tested_on"]))
    return [(label, pivot_texts(clean, ["name", "trained_on"], "tested_on", metric, order),
             f"figures/{figure_slug('cross-source', metric)}.png") for metric, label in view_metrics("matrix").items()]


def pivot_texts(frame: pd.DataFrame, index: list[str], columns: str, metric: str, order: list[str]) -> pd.DataFrame:
    """A metric's texts (:func:`cell_text`) with ``index`` as rows and ``columns`` (in ``order``) as columns."""
    shown = frame.assign(shown=[cell_text(row, metric) for _, row in frame.iterrows()])
    table = shown.pivot(index=index, columns=columns, values="shown")
    table = table.reindex(columns=order).fillna("–").reset_index()
    table.columns.name = None
    return table.rename(columns={"name": "Detector", "trained_on": "Trained on"})


def comparison_tables(frame: pd.DataFrame, headline: Mapping[str, Metric]) -> list[tuple[str, pd.DataFrame]]:
    """The detector comparisons made, as text tables, one per (training set, test source, perturbation)."""
    first = next(iter(headline))
    compared = frame[frame[f"{first}_difference"].notna()] if not frame.empty else frame
    if compared.empty:
        return []
    tables = []
    delong = compared[f"{DELONG}_delong_p"].notna().any()
    for (trained_on, tested_on, _, perturbation), group in compared.groupby(
            ["trained_on", "tested_on", "level_order", "perturbation"], sort=True):
        rows = list(group.iterrows())
        table = {"A": group["a"], "B": group["b"]}
        for name, declared in headline.items():
            table[f"{declared.label} A − B"] = [difference_text(name, row) for _, row in rows]
            table[f"{declared.label} p (Holm)"] = group[f"{name}_p_holm"].map(p_text)
            if name == DELONG and delong:
                table[f"{declared.label} DeLong p"] = group[f"{DELONG}_delong_p"].map(p_text)
        table |= {"Verdict": [verdict(row, first) for _, row in rows], "Test": group["test"]}
        tables.append((f"Trained on {trained_on}, tested on {tested_on}, {perturbation}", pd.DataFrame(table)))
    return tables


def not_compared(frame: pd.DataFrame, headline: Mapping[str, Metric]) -> str:
    """A sentence counting the pairs of detectors that could not be compared, by reason ("" when none)."""
    if frame.empty:
        return ""
    reasons = frame.loc[frame[f"{next(iter(headline))}_difference"].isna(), "test"].value_counts(sort=False)
    return " ".join(f"{count} pair{'s' if count != 1 else ''} {reason}." for reason, count in reasons.items())


def attribution_table(records: list[Record]) -> tuple[str, pd.DataFrame] | None:
    """The attribution scores of the records that have them (an explanation and one row per method)."""
    explained = sorted((r for r in records if r.attribution is not None and r.attribution.methods),
                       key=lambda r: (r.train.name, r.detector, r.seed))
    if not explained:
        return None
    first = explained[0].attribution
    note = (
        f"Means over {first.images['real']} real and {first.images['fake']} fake test images per detector, "
        "with bootstrap 95% intervals. Faithfulness: insertion AUC minus deletion AUC (higher is better); "
        "shuffled map: the same score for the trained model with each map's pixels randomly permuted, the level "
        "a map must beat; random weights: the same score for the architecture with its initial random weights. "
        "Randomisation rho: rank correlation of the trained and random-weight maps (lower: the maps depend on what "
        "was learned). Centre share: attribution mass in the central square, which is "
        f"{first.centre_area_share:.0%} of the image; above that, the detector looks at the object rather than "
        "the background. Centre share random weights: the same for the random-weight maps of the same images, the "
        "share owed to the method and architecture before training. – where a record predates a score."
    )
    rows = []
    for r in explained:
        for method, scores in r.attribution.methods.items():
            row = {"Detector": r.detector, "Trained on": r.train.name, "Seed": r.seed, "Method": method}
            for key, label in ATTRIBUTION.items():
                row[label] = interval_text(scores[key].value, scores[key].ci) if key in scores else "–"
            row["Picture"] = r.attribution.figure
            rows.append(row)
    return note, pd.DataFrame(rows)


def source_attribution_tables(records: list[Record]) -> list[tuple[str, pd.DataFrame]]:
    """Per source-attribution job, a heading and the share of each test source's images given each class."""
    jobs: dict[tuple, list[Record]] = {}
    for r in records:
        if r.source_attribution is not None and r.perturbation.name == "clean":
            jobs.setdefault((r.detector, r.train.name, r.seed), []).append(r)
    tables = []
    for (detector, trained_on, seed), group in sorted(jobs.items()):
        classes = group[0].source_attribution.classes
        rows = {}
        for r in sorted(group, key=lambda r: r.test.name):
            predicted = r.source_attribution.predicted
            for source in sorted(predicted, key=lambda name: name != "real"):  # the real test images first
                counts = predicted[source]
                name = f"{r.test.real.sources[0].name} (real)" if source == "real" else source
                total = sum(counts.values())
                rows[name] = {"Test source": name, "Images": total,
                              **{c: f"{counts[c] / total:.1%}" for c in classes}}
        tables.append((f"{detector} trained on {trained_on} (seed {seed})", pd.DataFrame(list(rows.values()))))
    return tables


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


def spread_columns(frame: pd.DataFrame, headline: Mapping[str, Metric]) -> dict[str, str]:
    """The std-across-seeds columns to show, one per headline metric (``AUC sd``): none unless some cell has several
    seeds."""
    return {name: f"{m.label} sd" for name, m in headline.items()} if (frame["n_seeds"] > 1).any() else {}


def provenance_summary(records: Sequence[Record]) -> dict[str, list[str]]:
    """What produced ``records``, for leaderboard headers: the distinct values of each provenance field, sorted.

    Keys: ``trained_on`` and ``scored_on`` (hardware), ``commands``, ``commits`` (with " (dirty)" where the code had
    uncommitted changes), ``versions`` (torch, timm, scikit-learn), ``seeds``, ``bootstrap`` (resamples per
    interval) and ``plugins`` (the code of detectors that are not shipped with bench, where a record names it).
    """
    stamps = [r.provenance for r in records]
    return {
        "trained_on": sorted({r.training.trained_on.describe() if r.training.trained_on
                              else "not trained here (weights made elsewhere)" for r in records}),
        "scored_on": sorted({p.hardware.describe() for p in stamps}),
        "commands": sorted({p.command for p in stamps}),
        "commits": sorted({f"{p.git.commit or 'unknown'}{' (dirty)' if p.git.dirty else ''}" for p in stamps}),
        "versions": sorted({", ".join(f"{name} {p.versions[name]}" for name in ("torch", "timm", "scikit-learn"))
                            for p in stamps}),
        "seeds": [str(seed) for seed in sorted({r.seed for r in records})],
        "bootstrap": [str(n) for n in sorted({r.bootstrap.resamples for r in records})],
        "plugins": sorted({f"{r.detector}: {code.distribution or 'not installed'} {code.version or ''} "
                           f"(code sha256 {code.sha256[:12]})" for r in records if (code := r.detector_code)}),
    }


def budgets(records: list[Record]) -> str:
    """Each detector's grid size, e.g. ``1 (no grid) for every detector`` or ``lenet 1, cifake-cnn 4``."""
    sizes = {r.detector: max(1, len(r.training.grid)) for r in records}
    if len(set(sizes.values())) == 1:
        size = next(iter(sizes.values()))
        return f"{size}{' (no grid)' if size == 1 else ''} for every detector"
    return ", ".join(f"{name} {size}" for name, size in sorted(sizes.items())) + " (unequal budgets)"


def evaluate_only_notes(records: list[Record]) -> list[str]:
    """One line per detector trained elsewhere (marked :data:`EVALUATE_ONLY`): its weights and threshold rule."""
    found = {(r.detector, r.evaluate_only, r.training.threshold_rule or ""): None for r in records if r.evaluate_only}
    return [f"{EVALUATE_ONLY} {detector}: evaluate-only, {note}; threshold {rule}" for detector, note, rule in found]


def view_metrics(view: View) -> dict[str, str]:
    """The metrics a view shows (``views`` of their declarations), in cell-table column order: name -> label."""
    shown = sorted((m.column or 0, name) for name, m in REGISTRY.items() if view in m.views)
    return {name: REGISTRY[name].label for _, name in shown}


def cell_columns(group: pd.DataFrame, headline: Mapping[str, Metric], only_measured: bool = False
                 ) -> list[tuple[str, str, bool]]:
    """The metric columns of a cell table, as (frame column, label, whether it is a metric with an interval rather
    than a plain number): each metric with a ``column``, in that order (one declared ``where_measured``, or every one
    with ``only_measured``, only where some cell has a value), each followed by its spread across seeds
    (:func:`spread_columns`) and by its chance level where that depends on the test images (e.g. ``AP chance``)."""
    spread = spread_columns(group, headline)
    columns = []
    for _, name in sorted((m.column, name) for name, m in REGISTRY.items() if m.column is not None):
        declared = REGISTRY[name]
        if (only_measured or declared.where_measured) and not (name in group and group[name].notna().any()):
            continue
        columns.append((name, declared.label, True))
        if name in spread:
            columns.append((f"{name}_std", spread[name], False))
        if declared.chance_key:
            columns.append((declared.chance_key, f"{declared.label} chance", False))
    return columns


def threshold_texts(board: Leaderboard, group: pd.DataFrame) -> list[str]:
    """Per row of a cells frame, the decision threshold of its seeds: one value, or the range across seeds."""
    thresholds = {f"records/{r.key}.json": r.threshold for r in board.records}
    texts = []
    for path in group["records"]:
        values = sorted({thresholds[p] for p in str(path).split() if p in thresholds})
        texts.append("–" if not values else f"{values[0]:.3g}" if len(values) == 1
                     else f"{values[0]:.3g}–{values[-1]:.3g}")
    return texts


THRESHOLD_NOTE = ("Threshold: the decision threshold on the detector's score (fake at or above it); the range across "
                  "seeds where they differ.")


def robustness_tables(frame: pd.DataFrame) -> list[tuple[str, list[tuple[str, pd.DataFrame]], list[tuple[str, str]]]]:
    """Per (training set, test source) with perturbations: its heading, a text table per robustness metric (one
    column per perturbation, in suite order) and its robustness curves as (label, path)."""
    if frame.empty or not (frame["family"] != "clean").any():
        return []
    out = []
    for (trained_on, tested_on), group in frame.groupby(["trained_on", "tested_on"], sort=True):
        order = list(dict.fromkeys(group.sort_values("level_order", kind="stable")["perturbation"]))
        tables = [(label, pivot_texts(group, ["name"], "perturbation", metric, order))
                  for metric, label in view_metrics("robustness").items() if group[metric].notna().any()]
        curves = [(label, f"figures/{figure_slug('robustness', trained_on, tested_on, metric)}.png")
                  for metric, label in view_metrics("curves").items()]
        out.append((f"Trained on {trained_on}, tested on {tested_on}", tables, curves))
    return out


def robustness_note(frame: pd.DataFrame) -> str:
    """The note above the robustness tables."""
    return ("One column per perturbation, in suite order. Evasion: the share of the fakes detected on clean input "
            f'that the perturbation turns into "real". {covers_note(frame)}')


def tested_sources(records: Sequence[Record]) -> tuple[str, dict[str, SourceDraw]]:
    """The real reference source and every test source (reference first) as the records describe them."""
    sources: dict[str, SourceDraw] = {}
    for r in sorted(records, key=lambda r: r.test.name):
        for draw in (*r.test.real.sources, *r.test.fake.sources):
            sources.setdefault(draw.name, draw)
    reference = records[0].test.real.sources[0].name
    return reference, {reference: sources.pop(reference), **sources}


SOURCES_NOTE = ("Each card: the first test images, the mean log-magnitude Fourier spectrum of the source's test images "
                "beside that of `{reference}` (real), and their radial profiles (azimuthal averages).")


def sources_table(board: Leaderboard) -> tuple[str, pd.DataFrame] | None:
    """Per test source its image count, encoding and card (path), with the reference source named: where the run drew
    a card for every source (None otherwise)."""
    if not board.records or board.root is None:
        return None
    reference, sources = tested_sources(board.records)
    if not all((board.root / card_path(name)).is_file() for name in sources):
        return None
    rows = []
    for name, info in sources.items():
        drawn, count = info.drawn, info.count
        rows.append({"Source": f"{name} (reference)" if name == reference else name,
                     "Images": f"{drawn:,}" if drawn == count else f"{drawn:,} of {count:,}",
                     "Encoding": info.encoded, "Card": card_path(name), "name": name})
    return reference, pd.DataFrame(rows)


def failed_jobs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Per failed job, what failed and why (detector, training set, seed, cells, reason) and its failure file."""
    if frame.empty or not failed(frame).any():
        return []
    jobs = frame[failed(frame)].groupby(["name", "trained_on", "seeds", "interval", "records"], sort=True).size()
    return [(f"{name} on {trained_on}, seed {seed}, {cells} cell{'s' if cells != 1 else ''}: "
             f"{interval.removeprefix(FAILED + ': ')}", path)
            for (name, trained_on, seed, interval, path), cells in jobs.items()]


FAILED_NOTE = (f"These jobs failed: their cells read \"{FAILED}\" below, not a number. Rerun the suite once the cause "
               "is fixed; the other cells are kept.")


def _interval_of(row: pd.Series, name: str) -> str:
    """A frame row's metric as the headline quotes it: value and interval, no flag."""
    low = row[f"{name}_ci_low"]
    return interval_text(row[name], None if missing(low) else (low, row[f"{name}_ci_high"]))


def _margin(difference: float, low: float, high: float, significant: bool, runner_up: str) -> str:
    """``+0.031 [+0.012, +0.050] over lenet (paired; significant after Holm)``."""
    told = "significant after Holm" if significant else "not significant after Holm"
    return f"{difference:+.3f} [{low:+.3f}, {high:+.3f}] over {runner_up} (paired; {told})"


def _best_on_source(board: Leaderboard, clean: pd.DataFrame, source: str) -> str:
    """The best detector on one test source (first headline metric) with its paired margin over the runner-up."""
    name, declared = next(iter(board.headline.items()))
    ranked = clean[clean["tested_on"] == source].sort_values(name, ascending=not declared.higher_is_better,
                                                             na_position="last")
    best = ranked.iloc[0]
    text = f"{best['name']}, {declared.label} {_interval_of(best, name)}"
    if len(ranked) < 2:
        return text
    pairs = board.comparisons
    a, b = (row["name"].removesuffix(f" {EVALUATE_ONLY}") for row in (best, ranked.iloc[1]))
    pair = pairs[(pairs["trained_on"] == best["trained_on"]) & (pairs["tested_on"] == source)
                 & (pairs["perturbation"] == best["perturbation"]) & (pairs["a"] == a) & (pairs["b"] == b)
                 ] if not pairs.empty else pairs
    if pair.empty or missing(pair.iloc[0][f"{name}_difference"]):
        return f"{text}; not compared with {ranked.iloc[1]['name']}"
    row = pair.iloc[0]
    return f"{text}; " + _margin(row[f"{name}_difference"], row[f"{name}_ci_low"], row[f"{name}_ci_high"],
                                 bool(row[f"{name}_significant"]), row["b"])


def _best_unseen_families(board: Leaderboard, trained_on: str) -> str | None:
    """The best detector on the generalization view's unseen macro mean, with its paired margin over the runner-up."""
    summary = board.generalization.summary if board.generalization else pd.DataFrame()
    rows = summary[(summary["trained_on"] == trained_on) & summary["unseen"].notna()] if len(summary) else summary
    if rows.empty:
        return None
    best = rows.iloc[0]
    text = f"{best['detector']}, macro mean AUC over {int(best['n_unseen'])} families {_interval_of(best, 'unseen')}"
    pairs = board.generalization.comparisons
    pair = pairs[(pairs["trained_on"] == trained_on) & (pairs["a"] == best["detector"])] if len(pairs) else pairs
    if pair.empty:
        return text
    row = pair.iloc[0]
    return f"{text}; " + _margin(row["difference"], row["difference_ci_low"], row["difference_ci_high"],
                                 bool(row["significant"]), row["b"])


def _best(board: Leaderboard, clean: pd.DataFrame, sources: list[str], unseen: bool) -> str | None:
    """The best detector on some test sources of one training set: on one source by the first headline metric, with
    its paired margin over the runner-up; on several unseen ones by the generalization view's unseen macro mean where
    there is one, else by the macro mean AUC over them (:func:`bench.generalization.best_macro_mean`), with its
    paired margin."""
    trained_on = clean.iloc[0]["trained_on"]
    if len(sources) == 1:
        return _best_on_source(board, clean, sources[0])
    if not sources:
        return None
    if unseen and (families := _best_unseen_families(board, trained_on)):
        return families
    best = best_macro_mean(board.aggregates, trained_on, sources)
    if best is None:
        return None
    value = interval_text(best.mean, best.ci)
    text = f"{best.detector}, macro mean AUC over {len(sources)} sources {value}"
    pair = best.runner_up
    if pair is None:
        return text
    return f"{text}; " + _margin(pair["difference"], pair["difference_ci_low"], pair["difference_ci_high"],
                                 pair["significant"], pair["b"])


def _at_chance(board: Leaderboard, clean: pd.DataFrame) -> tuple[Metric, list[str]] | None:
    """The test sources where every detector's interval of the first headline metric with a chance level covers it."""
    declared = next((m for m in board.headline.values() if m.chance is not None), None)
    if declared is None:
        return None
    sources = []
    for source, group in clean.groupby("tested_on", sort=True):
        low, high = group[f"{declared.name}_ci_low"], group[f"{declared.name}_ci_high"]
        if low.notna().all() and ((low <= declared.chance) & (high >= declared.chance)).all():
            sources.append(source)
    return declared, sources


def headline_paragraphs(board: Leaderboard) -> list[str]:
    """The headline: per training set (clean test images) one paragraph saying what was trained on what, the best
    detector on generators seen and unseen in training (:func:`bench.generalization.generator_seen`) with its paired
    margin over the runner-up on the first headline metric, and the test sources where every detector is at chance
    (its interval covers the chance level)."""
    frame = board.cells
    if frame.empty:
        return []
    clean = frame[(frame["family"] == "clean") & ~failed(frame)]
    first = {}
    for r in board.records:
        first.setdefault((r.train.name, r.test.name), r)
    paragraphs = []
    for trained_on, cells in clean.groupby("trained_on", sort=True):
        sources = list(dict.fromkeys(cells["tested_on"]))
        seen = {source: generator_seen(first[trained_on, source]) for source in sources}
        record = first[trained_on, sources[0]]
        fakes = ", ".join(draw.name for draw in record.train.fake.sources)
        seeds = sorted({int(n) for n in cells["n_seeds"]})
        detectors = cells["name"].nunique()
        text = (f"Trained on {trained_on} ({record.train.real.count:,} real and "
                f"{record.train.fake.count:,} fake images from {fakes}): {detectors} "
                f"detector{'s' if detectors != 1 else ''}, {'/'.join(map(str, seeds))} training "
                f"seed{'s' if seeds != [1] else ''} each, tested on {len(sources)} "
                f"source{'s' if len(sources) != 1 else ''}.")
        for label, wanted in (("seen", True), ("unseen", False)):
            group = [s for s in sources if seen[s] is wanted]
            best = _best(board, cells, group, unseen=not wanted)
            if best:
                named = ", ".join(group) if len(group) <= 3 else f"{len(group)} sources"
                text += f" Best on generators {label} in training ({named}): {best}."
        chance = _at_chance(board, cells)
        if chance and chance[1]:
            declared, at = chance
            text += (f" Every detector is at chance ({declared.label} interval covers {declared.chance:g}) on: "
                     f"{', '.join(at)}.")
        paragraphs.append(text)
    return paragraphs
