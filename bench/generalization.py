"""The generalization view: how well each detector, on each training set, catches generators it was not trained on.

A test source's generator *family* is its ``family`` tag (its *kind* and *year* are tags too; see the suites'
``tags:``), read from the suite each record carries. A family is *seen* by a training set when one of the training
set's sources has that family tag (other images of the same generator were in training), *unseen* otherwise. Test
sources without a family tag (a control such as blurred fakes, or the sources of suites without tags) are left
out of the view. Per detector and training set, on clean test images, with AUC as the metric:

- **seen**: the mean AUC over the seen families (each family weighted equally);
- **unseen macro mean**: the mean AUC over the unseen families, each family weighted equally whatever its
  number of images (a mean dominated by one large source is not generalization);
- **worst family**: the unseen family with the lowest mean AUC, named, with its cell's interval;
- **gap**: seen minus unseen macro mean (positive: the detector does worse on generators it has not seen);
- per value of :data:`POOL_BY` (the kind): the macro mean over the unseen families of that kind.

A family's AUC is the mean over its test sources (there is usually one) and over the training seeds. Intervals
are the t-type intervals of :func:`bench.statistics.seed_mean_interval`: the variance of a number adds its
variance across training seeds over their number to the part of its bootstrap variance over test images that the
seeds share (:func:`bench.statistics.shared_image_variance`); every resample draws the real test images once,
shared by all families, and each family's fakes on their own, and scores every seed and detector on that draw.
Detectors trained on the same set are compared on the unseen macro mean with
:func:`bench.statistics.seed_difference_test` (paired by seed, same image draws), Holm-adjusted across the pairs
of that training set (:func:`bench.statistics.holm`). The heatmap shows every detector against every family,
ordered by kind and year, per training set.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import matplotlib
import numpy as np
import pandas as pd

from bench.compare import Aggregate, verdict_text
from bench.records import Record, metric_text
from bench.statistics import holm, seed_difference_test, seed_mean_interval, shared_image_variance, source_resamples

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

AUC = "roc_auc"  # the view's metric (bench.metrics.RocAuc)
POOL_BY = "kind"  # the tag whose values get a column of macro means over their unseen families
HEADING = "Generalization to unseen generators"
NOTE = (
    "Per detector and training set, on clean test images. A test source's family is its `family` tag; a family is "
    "seen when images of it (other images of the same generator) were in the training set, unseen otherwise; test "
    "sources without a family tag (controls) are left out here. Seen: the mean AUC over the seen families. Unseen "
    "(macro): the mean AUC over the unseen families, each family weighted equally whatever its number of images. "
    "Worst: the unseen family with the lowest AUC, with its cell's interval. Gap: seen minus unseen macro mean. "
    "Per {pool}: the macro mean over that {pool}'s unseen families (n: how many). Each number is a mean over "
    "training seeds with the t-type interval of the cells' tables: the variance across seeds over their number plus "
    "the test-image variance the seeds share, bootstrapped with the real test images drawn once for all families "
    "and each family's fakes on their own; with one seed it covers the test images only."
)
COMPARISON_NOTE = (
    "Detectors trained on the same set, compared on the unseen macro mean: the difference A - B with its t-type "
    "interval (test images: the same bootstrap draws for both; seeds paired by seed number where both have the same "
    "seeds), p-values Holm-adjusted across the pairs of the training set; the verdict comes from the adjusted "
    "p-value."
)


@dataclass(frozen=True)
class Family:
    """A generator family as its test sources' tags describe it (``family``, ``kind``, ``year``, ...)."""

    name: str
    tags: dict

    @property
    def label(self) -> str:
        return f"{self.name} ({self.tags.get('kind', '–')}, {self.tags.get('year', '–')})"

    @property
    def order(self) -> tuple[str, str, str]:
        """Heatmap order: by kind, then year, then name."""
        return str(self.tags.get("kind", "")), str(self.tags.get("year", "")), self.name


@dataclass
class Group:
    """One detector on one training set: its per-family aggregates (clean cells) and what it saw in training."""

    detector: str
    trained_on: str
    seen: frozenset[str]
    cells: dict[str, list[Aggregate]] = field(default_factory=dict)  # family -> its test sources' aggregates

    @property
    def first(self) -> Aggregate:
        return next(iter(self.cells.values()))[0]

    @property
    def seeds(self) -> list[int]:
        return self.first.seeds

    def per_seed(self, families: Sequence[str]) -> np.ndarray:
        """(seeds,) mean AUC over ``families`` (each the mean over its sources) per training seed."""
        return np.mean([np.mean([one.metrics[AUC]["per_seed"] for one in self.cells[f]], axis=0)
                        for f in families], axis=0)

    def family_mean(self, family: str) -> float:
        return float(np.mean([one.metrics[AUC]["mean"] for one in self.cells[family]]))


@dataclass(frozen=True)
class Generalization:
    """The view's numbers: ``summary`` (one row per detector and training set, best unseen macro mean first, with a
    column per value of :data:`POOL_BY` in ``pools``), ``comparisons`` (pairs of detectors on the unseen macro
    mean) and ``heatmap`` (one row per detector, training set and family)."""

    summary: pd.DataFrame
    comparisons: pd.DataFrame
    heatmap: pd.DataFrame
    pools: list[str]

    def tables(self) -> list[tuple[str, str, pd.DataFrame]]:
        """(heading, note, text table) per training set and per comparison, as Markdown and HTML print them."""
        out = []
        for trained_on, rows in self.summary.groupby("trained_on", sort=False):
            seen = ", ".join(rows.iloc[0]["seen_families"].split()) or "none"
            table = {"Detector": rows["detector"], "Seeds": rows["seeds"],
                     "Seen": _texts(rows, "seen"), "Unseen (macro)": _texts(rows, "unseen"),
                     "Worst unseen family": [f"{row['worst_family']} {_text(row, 'worst')}" for _, row in
                                             rows.iterrows()],
                     "Gap (seen − unseen)": _texts(rows, "gap", signed=True)}
            for value in self.pools:
                column = f"{POOL_BY}={value}"
                if rows[column].notna().any():
                    table[f"{value} (n={int(rows[f'{column}_n'].iloc[0])})"] = _texts(rows, column)
            out.append((f"Trained on {trained_on}", f"Seen families: {seen}.", pd.DataFrame(table)))
        for trained_on, rows in (self.comparisons.groupby("trained_on", sort=False) if len(self.comparisons)
                                 else []):
            table = pd.DataFrame({
                "A": rows["a"], "B": rows["b"],
                "Unseen macro A − B": [_difference_text(row) for _, row in rows.iterrows()],
                "p": rows["p_value"].map(_p_text), "p (Holm)": rows["p_holm"].map(_p_text),
                "Verdict": rows["verdict"],
            })
            out.append((f"Trained on {trained_on}: which detector generalizes better", COMPARISON_NOTE, table))
        return out

    def markdown(self, escape: Callable[[str], str] = str) -> list[str]:
        """The view as Markdown lines: note, tables, heatmaps; ``escape`` makes the names in them inert (e.g.
        :func:`bench.leaderboard_markdown.inert`)."""
        lines = [f"## {HEADING}", "", NOTE.format(pool=POOL_BY), ""]
        for heading, note, table in self.tables():
            shown = table.map(lambda value: escape(value) if isinstance(value, str) else value)
            lines += [f"### {escape(heading)}", "", escape(note), "",
                      shown.to_markdown(index=False, disable_numparse=True), ""]
        lines += [f"![Generalization heatmap, trained on {escape(name)}]({path})" for name, path in self.figure_paths()]
        return [*lines, ""]

    def frames(self) -> dict[str, tuple[str, pd.DataFrame]]:
        """The tables the leaderboard writes as CSV and JSON: file stem -> (name, frame)."""
        return {"leaderboard-generalization": ("generalization", self.summary),
                "leaderboard-generalization-comparisons": ("generalization_comparisons", self.comparisons)}

    def figure_paths(self) -> list[tuple[str, str]]:
        """(training set, path of its heatmap relative to the leaderboard folder)."""
        return [(name, f"figures/generalization-{name.replace('/', '_').replace(' ', '_')}.png")
                for name in dict.fromkeys(self.heatmap["trained_on"])]

    def figures(self) -> dict[str, bytes]:
        """The heatmaps as PNG bytes by path relative to the leaderboard folder."""
        return {path: heatmap(self.heatmap[self.heatmap["trained_on"] == name], name)
                for name, path in self.figure_paths()}


def _text(row: pd.Series, name: str, signed: bool = False) -> str:
    value, low, high = row.get(name), row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if value is None or pd.isna(value):
        return "–"
    if signed:
        return f"{value:+.3f}" + ("" if pd.isna(low) else f" [{low:+.3f}, {high:+.3f}]")
    return metric_text(value, None if pd.isna(low) else (low, high))


def _texts(rows: pd.DataFrame, name: str, signed: bool = False) -> list[str]:
    return [_text(row, name, signed) for _, row in rows.iterrows()]


def _difference_text(row: pd.Series) -> str:
    text = _text(row, "difference", signed=True)
    return f"**{text}**" if row["significant"] else text


def _p_text(value: float) -> str:
    return "–" if pd.isna(value) else "< 0.001" if value < 0.001 else f"{value:.3f}"


def _tags(record: Record, source: str) -> dict:
    """The tags the record's suite gives ``source`` ({} for none, or for records without their suite)."""
    return ((record.suite_config or {}).get("sources", {}).get(source) or {}).get("tags") or {}


def _trained_families(record: Record) -> frozenset[str]:
    """The families of the sources of the record's training set."""
    config = record.suite_config or {}
    train = next((t for t in config.get("train", []) if t.get("name") == record.train.name), {})
    names = [*train.get("real", []), *train.get("fake", [])]
    return frozenset(tags["family"] for name in names if "family" in (tags := _tags(record, name)))


SAMPLING_FIELDS = ("split", "count", "seed", "limit")  # how a source samples its generator, not which generator


def _origin(record: Record, source: str) -> dict | None:
    """What a source's suite entry says of its generator: the entry without how it samples (:data:`SAMPLING_FIELDS`),
    a perturbed source's ``source`` replaced by that source's origin; None where the suite does not describe it."""
    entry = (record.suite_config or {}).get("sources", {}).get(source)
    if not entry:
        return None
    entry = {key: value for key, value in entry.items() if key not in SAMPLING_FIELDS}
    return entry | {"source": _origin(record, entry["source"])} if entry.get("source") else entry


def generator_seen(record: Record) -> bool | None:
    """Whether the generator of the record's fake test images was seen in training: by ``family`` tags where the
    suite tags its sources (None for an untagged test source there: a control), else when a training source's suite
    entry differs from the test source's only in how it samples (e.g. the train and test splits of one generator);
    None for a perturbed source (a control) and for sources the suite does not describe."""
    tagged = any("family" in (entry or {}).get("tags", {})
                 for entry in (record.suite_config or {}).get("sources", {}).values())
    test = record.test.name
    if tagged:
        family = _tags(record, test).get("family")
        return None if family is None else family in _trained_families(record)
    tested = [_origin(record, draw.name) for draw in record.test.fake.sources]
    if any(origin is None or origin.get("perturbation") for origin in tested):
        return None  # not described by the suite, or a control: images of some source, altered
    trained = [_origin(record, draw.name) for draw in record.train.fake.sources]
    return all(origin in trained for origin in tested)


def _groups(aggregates: Sequence[Aggregate]) -> tuple[list[Group], dict[str, Family]]:
    """The clean cells of tagged test sources, by detector and training set; and every family met."""
    groups: dict[tuple[str, str], Group] = {}
    families: dict[str, Family] = {}
    for one in aggregates:
        first = one.records[0]
        tags = _tags(first, one.cell.tested_on)
        if one.cell.perturbation != "clean" or "family" not in tags or first.not_applicable:
            continue
        family = str(tags["family"])
        families.setdefault(family, Family(family, tags))
        group = groups.setdefault((one.cell.name, one.cell.trained_on),
                                  Group(one.cell.name, one.cell.trained_on, _trained_families(first)))
        group.cells.setdefault(family, []).append(one)
    return list(groups.values()), families


def _resampled(groups: Sequence[Group]) -> dict[str, dict[str, np.ndarray]] | None:
    """Per detector (of one training set) and family, the AUC of each seed on each bootstrap draw of the test
    images: (resamples, seeds) arrays. Every draw takes the real test images once for all families (they are the same
    images) and each test source's fakes on its own; every detector and seed is scored on the same draws. None
    when a cell has no score files, the cells were scored on different real images or with other seeds, or the
    suite drew no resamples."""
    cells = [one for group in groups for ones in group.cells.values() for one in ones]
    boot = cells[0].bootstrap
    n_boot = boot.resamples
    if (n_boot < 2 or any(one.runs is None for one in cells)
            or len({one.records[0].scored_images[0] for one in cells}) > 1
            or any(one.seeds != group.seeds for group in groups for ones in group.cells.values() for one in ones)):
        return None
    draws = source_resamples({(group.detector, one.cell.tested_on): (one.cell.tested_on, one.runs)
                              for group in groups for ones in group.cells.values() for one in ones},
                             n_boot, boot.seed, names=[AUC])
    by_source = {key: samples[AUC] for key, samples in draws.items()}
    return {group.detector: {family: np.mean([by_source[group.detector, one.cell.tested_on] for one in ones], axis=0)
                             for family, ones in group.cells.items()} for group in groups}


def _interval(group: Group, families: Sequence[str], resampled: dict[str, np.ndarray] | None, level: float,
              minus: Sequence[str] = ()) -> dict:
    """Mean over seeds of the macro mean AUC over ``families`` (minus that over ``minus``: a gap), with its t
    interval (none without resamples); ``{}`` when ``families`` is empty."""
    if not families:
        return {}
    per_seed = group.per_seed(families) - (group.per_seed(minus) if len(minus) else 0)
    if resampled is None:
        return {"mean": float(np.mean(per_seed)), "ci": None}
    draws = _macro(resampled, families) - (_macro(resampled, minus) if len(minus) else 0)
    bounds = (-1.0, 1.0) if len(minus) else (0.0, 1.0)
    summary = seed_mean_interval(per_seed, shared_image_variance(draws, per_seed), level, len(draws) - 1.0, bounds)
    return {"mean": summary["mean"], "ci": summary["ci"]}


def _macro(resampled: dict[str, np.ndarray], families: Sequence[str]) -> np.ndarray:
    """(resamples, seeds) mean AUC over ``families`` on each draw."""
    return np.mean([resampled[f] for f in families], axis=0)


def _columns(name: str, result: dict) -> dict:
    ci = result.get("ci") or (None, None)
    return {name: result.get("mean"), f"{name}_ci_low": ci[0], f"{name}_ci_high": ci[1]}


def generalization(aggregates: Sequence[Aggregate]) -> Generalization | None:
    """The generalization view of a leaderboard's aggregates (see the module docstring); None when no detector has
    an unseen family among its tagged test sources."""
    groups, families = _groups(aggregates)
    if not any(set(group.cells) - group.seen for group in groups):
        return None
    order = sorted(families, key=lambda name: families[name].order)
    pools = list(dict.fromkeys(str(families[f].tags.get(POOL_BY, "–")) for f in order))
    summary, comparisons, heatmap_rows = [], [], []
    for trained_on in dict.fromkeys(group.trained_on for group in groups):
        members = sorted((group for group in groups if group.trained_on == trained_on),  # best unseen mean first
                         key=lambda g: (-np.mean([g.family_mean(f) for f in g.cells if f not in g.seen] or [-1]),
                                        g.detector))
        resampled = _resampled(members)
        level = members[0].first.bootstrap.level
        unseen_of: dict[str, list[str]] = {}
        for group in members:
            seen = [f for f in order if f in group.cells and f in group.seen]
            unseen = unseen_of[group.detector] = [f for f in order if f in group.cells and f not in group.seen]
            draws = resampled[group.detector] if resampled else None
            row = {"trained_on": trained_on, "detector": group.detector,
                   "seeds": ", ".join(map(str, group.seeds)), "seen_families": " ".join(seen),
                   "unseen_families": " ".join(unseen), "n_seen": len(seen), "n_unseen": len(unseen)}
            row |= _columns("seen", _interval(group, seen, draws, level))
            row |= _columns("unseen", _interval(group, unseen, draws, level))
            row |= _columns("gap", _interval(group, seen, draws, level, minus=unseen) if seen and unseen else {})
            worst = min(unseen, key=group.family_mean, default=None)
            row["worst_family"] = worst or "–"
            if worst is not None:
                ones = group.cells[worst]
                result = ({"mean": ones[0].metrics[AUC]["mean"], "ci": ones[0].metrics[AUC]["ci"]}
                          if len(ones) == 1 else _interval(group, [worst], draws, level))
                row |= _columns("worst", result)
            for value in pools:
                pooled = [f for f in unseen if str(families[f].tags.get(POOL_BY, "–")) == value]
                row |= _columns(f"{POOL_BY}={value}", _interval(group, pooled, draws, level))
                row[f"{POOL_BY}={value}_n"] = len(pooled)
            summary.append(row)
            heatmap_rows += [{"trained_on": trained_on, "detector": group.detector, "family": f,
                              "label": families[f].label, "seen": f in group.seen, AUC: group.family_mean(f)}
                             for f in order if f in group.cells]
        comparisons += _comparisons(members, unseen_of, resampled, level)
    return Generalization(pd.DataFrame(summary), pd.DataFrame(comparisons), pd.DataFrame(heatmap_rows), pools)


def _comparisons(members: list[Group], unseen_of: dict[str, list[str]],
                 resampled: dict[str, dict[str, np.ndarray]] | None, level: float) -> list[dict]:
    """Pairs of detectors of one training set on the unseen macro mean (better mean first), Holm-adjusted."""
    if resampled is None:
        return []
    ranked = sorted((g for g in members if unseen_of[g.detector]), key=lambda g: -g.per_seed(unseen_of[g.detector])
                    .mean())
    pairs = []
    for a, b in combinations(ranked, 2):
        families = unseen_of[a.detector]
        if families != unseen_of[b.detector]:
            continue  # not the same unseen families: not comparable
        (draws_a, values_a), (draws_b, values_b) = ((_macro(resampled[g.detector], families), g.per_seed(families))
                                                    for g in (a, b))
        paired = a.seeds == b.seeds
        image_variance = (shared_image_variance(draws_a - draws_b, values_a - values_b) if paired
                          else shared_image_variance(draws_a, values_a, minus=(draws_b, values_b)))
        test = seed_difference_test(values_a, values_b, image_variance, paired=paired, level=level,
                                    image_df=len(draws_a) - 1.0)
        pairs.append({"trained_on": a.trained_on, "a": a.detector, "b": b.detector,
                      "a_unseen": float(a.per_seed(families).mean()), "b_unseen": float(b.per_seed(families).mean()),
                      "difference": test["difference"], "difference_ci_low": test["ci"][0],
                      "difference_ci_high": test["ci"][1], "p_value": test["p_value"]})
    adjusted = holm([pair["p_value"] for pair in pairs]) if pairs else []
    for pair, p_holm in zip(pairs, adjusted, strict=True):
        significant = bool(p_holm < 1 - level)
        pair |= {"p_holm": float(p_holm), "significant": significant,
                 "verdict": verdict_text(pair["a"], pair["b"], {AUC: {
                     "a": pair["a_unseen"], "b": pair["b_unseen"], "difference": pair["difference"],
                     "significant": significant}})}
    return pairs


@dataclass(frozen=True)
class MacroMean:
    """The best detector of one training set on the macro mean AUC over some test sources (clean cells), with its
    interval, and its paired comparison with the runner-up (None with one detector, or without score files)."""

    detector: str
    mean: float
    ci: list[float] | None
    runner_up: dict | None  # the generalization view's comparison row: b, difference, its ci, p_holm, significant


def best_macro_mean(aggregates: Sequence[Aggregate], trained_on: str, sources: Sequence[str]) -> MacroMean | None:
    """The detector trained on ``trained_on`` with the highest macro mean AUC over the clean cells of ``sources`` (each
    source weighted equally; intervals and the paired test as the generalization view's, each source taken as a
    family); None unless every detector has every source."""
    groups: dict[str, Group] = {}
    for one in aggregates:
        if (one.cell.trained_on == trained_on and one.cell.perturbation == "clean" and one.cell.tested_on in sources
                and not one.records[0].not_applicable):
            group = groups.setdefault(one.cell.name, Group(one.cell.name, trained_on, frozenset()))
            group.cells[one.cell.tested_on] = [one]
    members = [g for g in groups.values() if set(g.cells) == set(sources)]
    if not members:
        return None
    members.sort(key=lambda g: (-g.per_seed(sources).mean(), g.detector))
    resampled = _resampled(members)
    level = members[0].first.bootstrap.level
    best = members[0]
    result = _interval(best, sources, resampled[best.detector] if resampled else None, level)
    pairs = _comparisons(members, dict.fromkeys(groups, list(sources)), resampled, level)
    runner_up = next((pair for pair in pairs if pair["a"] == best.detector), None)
    return MacroMean(best.detector, result["mean"], result["ci"], runner_up)


def heatmap(frame: pd.DataFrame, trained_on: str) -> bytes:
    """Detectors (rows) x families (columns, in the frame's order: by kind and year) coloured by mean AUC; seen
    families are marked "(seen)"."""
    columns = list(dict.fromkeys(frame["family"]))
    rows = list(dict.fromkeys(frame["detector"]))
    table = frame.pivot(index="detector", columns="family", values=AUC).reindex(index=rows, columns=columns)
    labels = frame.drop_duplicates("family").set_index("family")
    ticks = [labels.loc[f, "label"] + (" (seen)" if frame[frame["family"] == f]["seen"].any() else "")
             for f in columns]
    figure, axis = plt.subplots(figsize=(0.55 * len(columns) + 2.5, 0.45 * len(rows) + 2.2), layout="constrained")
    image = axis.imshow(table.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    for (r, c), value in np.ndenumerate(table.to_numpy(dtype=float)):
        if not np.isnan(value):
            axis.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7)
    axis.set_xticks(range(len(columns)), ticks, rotation=55, ha="right", fontsize=7)
    axis.set_yticks(range(len(rows)), rows, fontsize=8)
    axis.set_title(f"AUC per generator family (mean over seeds), trained on {trained_on}", fontsize=9)
    figure.colorbar(image, ax=axis, shrink=0.8, label="AUC")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
