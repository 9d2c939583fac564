"""Figures rendered from a leaderboard frame (matplotlib): robustness curves and cross-source heatmaps.

Both take the per-cell frame of :func:`bench.leaderboard_model.cells_frame` (one row per cell: the mean over its
training seeds, with its interval) and return PNG bytes, so the leaderboard writes them atomically beside its
tables. Detectors are told apart by the frame's ``name`` (the detector with its constructor arguments).
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def robustness_curves(frame: pd.DataFrame, metric: str, label: str, title: str) -> bytes:
    """One panel per perturbation family: ``metric`` against the level, one line per detector.

    The x axis of each panel is "clean" followed by the family's levels in suite order (the order of the
    ``level_order`` column), with the frame's intervals as shaded bands.
    """
    families = [f for f in dict.fromkeys(frame["family"]) if f != "clean"]
    clean = frame[frame["family"] == "clean"]
    detectors = list(dict.fromkeys(frame["name"]))
    colours = dict(zip(detectors, plt.cm.tab10(np.linspace(0, 1, 10))[: len(detectors)], strict=False))
    figure, axes = plt.subplots(1, max(len(families), 1), figsize=(3.6 * max(len(families), 1), 3.4),
                                squeeze=False, sharey=True, layout="constrained")
    for axis, family in zip(axes[0], families, strict=False):
        rows = frame[frame["family"] == family].sort_values("level_order")
        levels = list(dict.fromkeys(rows["level"]))
        ticks = ["clean", *levels] if not clean.empty else levels
        for detector in detectors:
            points = pd.concat([clean[clean["name"] == detector], rows[rows["name"] == detector]])
            points = points.drop_duplicates("level").set_index("level").reindex(ticks)
            x = np.arange(len(ticks))
            axis.plot(x, points[metric], marker="o", label=detector, color=colours[detector])
            low, high = points[f"{metric}_ci_low"], points[f"{metric}_ci_high"]
            if low.notna().any():
                axis.fill_between(x, low.astype(float), high.astype(float), alpha=0.15, color=colours[detector])
        axis.set_xticks(np.arange(len(ticks)), ticks, rotation=30, ha="right", fontsize=8)
        axis.set_title(family, fontsize=10)
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel(label)
    axes[0, -1].legend(fontsize=8, loc="best")
    figure.suptitle(title, fontsize=10)
    return _png(figure)


def cross_source_heatmap(frame: pd.DataFrame, metric: str, label: str, title: str) -> bytes:
    """One heatmap per detector: rows = training set, columns = test source, cells = ``metric``."""
    detectors = list(dict.fromkeys(frame["name"]))
    rows = list(dict.fromkeys(frame["trained_on"]))
    columns = list(dict.fromkeys(frame["tested_on"]))
    width, height = 0.9 * len(columns) + 0.6, 0.5 * len(rows) + 1.6
    figure, axes = plt.subplots(1, len(detectors), figsize=(width * len(detectors) + 2.5, height), squeeze=False,
                                layout="constrained")
    for i, (axis, detector) in enumerate(zip(axes[0], detectors, strict=True)):
        table = (frame[frame["name"] == detector].pivot(index="trained_on", columns="tested_on", values=metric)
                 .reindex(index=rows, columns=columns))
        image = axis.imshow(table.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        for (r, c), value in np.ndenumerate(table.to_numpy(dtype=float)):
            if not np.isnan(value):
                axis.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8)
        axis.set_xticks(range(len(columns)), columns, rotation=35, ha="right", fontsize=8)
        axis.set_yticks(range(len(rows)), rows if i == 0 else [], fontsize=8)
        axis.set_title(detector, fontsize=10)
        axis.set_xlabel("tested on", fontsize=8)
    axes[0, 0].set_ylabel("trained on", fontsize=8)
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.9, label=label)
    figure.suptitle(title, fontsize=10)
    return _png(figure)
