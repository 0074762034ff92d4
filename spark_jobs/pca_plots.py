"""pca's pictures: the scree plot (explained variance, k) and the night's photos on the first
two components."""

from __future__ import annotations

import io

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

PLOT_SAMPLE_ROWS = 5000  # the projection plot never collects more than this


def scree_plot(
    explained: list[float], variance: float | None, k: int, feature_size: int, rows: int
) -> bytes:
    """Each component's share of the variance (bars) and the cumulated share (line), with k.
    The axis ends at the last component the Training rows can have: fewer rows than features
    leave the other directions with no variance, and the plot says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    components = np.arange(1, len(explained) + 1)
    figure, axes = plt.subplots(figsize=(9, 5.5))
    axes.bar(components, explained, width=1.0, color="tab:gray", label="each component")
    axes.plot(components, np.cumsum(explained), color="tab:blue", label="cumulated")
    if variance is not None:
        axes.axhline(variance, color="tab:red", linestyle="--", label=f"target {variance:.0%}")
    axes.axvline(k, color="tab:green", linestyle=":", label=f"k = {k} (kept)")
    axes.set(
        xlabel=f"principal component (1 to {len(explained)})",
        ylabel="share of the Training rows' variance",
        ylim=(0, 1.01),
        xlim=(0, len(explained) + 1),
    )
    axes.set_title(f"PCA: explained variance, k = {k} of {len(explained)} components")
    if len(explained) < feature_size:
        axes.text(
            0.98,
            0.35,
            f"Why the axis ends at {len(explained)}: {rows} Training rows have at most\n"
            f"{len(explained)} components (their covariance has rank < {rows}); the other\n"
            f"directions of the {feature_size} features explain no variance.",
            transform=axes.transAxes,
            ha="right",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "tab:gray", "alpha": 0.9},
        )
    axes.legend(loc="lower right")
    return _png(figure)


SPLIT_MARKERS = {"Training": "o", "Test": "^"}


def projection_plot(points: list[dict], night: str) -> bytes:
    """The night's photos on the first two components of the night's model: colour = label,
    marker = split (dots Training, triangles Test)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    labels = sorted({p["label"] for p in points})
    palette = plt.get_cmap("tab20" if len(labels) <= 20 else "turbo", max(len(labels), 1))
    colour = {label: palette(index) for index, label in enumerate(labels)}
    figure, axes = plt.subplots(figsize=(12, 8))
    for split, marker in SPLIT_MARKERS.items():
        mine = [p for p in points if p["split"] == split]
        if not mine:
            continue
        xy = np.array([p["xy"] for p in mine])
        axes.scatter(
            xy[:, 0],
            xy[:, 1],
            s=14 if split == "Training" else 30,
            c=[colour[p["label"]] for p in mine],
            marker=marker,
            alpha=0.75,
            edgecolors="black" if split == "Test" else "none",
            linewidths=0.5,
        )
    counts = {s: sum(p["split"] == s for p in points) for s in SPLIT_MARKERS}
    splits = [
        Line2D([], [], color="gray", marker=m, linestyle="", label=f"{s} ({counts[s]})")
        for s, m in SPLIT_MARKERS.items()
    ]
    by_label = [
        Line2D([], [], color=colour[label], marker="s", linestyle="", label=label)
        for label in labels
    ]
    legend = axes.legend(handles=splits, loc="upper right", title="split")
    axes.add_artist(legend)
    axes.legend(
        handles=by_label,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=7,
        ncol=2 if len(labels) > 30 else 1,
        title="label",
    )
    axes.set(xlabel="component 1", ylabel="component 2")
    axes.set_title(
        f"Night {night} only: its {len(points)} photos ({len(labels)} labels) on the first two "
        f"components of night {night}'s PCA model"
    )
    figure.tight_layout()
    return _png(figure)


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def plot_sample(vectors: DataFrame) -> list[dict]:
    """A deterministic, bounded sample of (label, split, first two components) for the plot."""
    rows = (
        vectors.orderBy(F.xxhash64("path"))
        .limit(PLOT_SAMPLE_ROWS)
        .select("label", "split", F.slice("pca_features", 1, 2).alias("xy"))
        .collect()
    )
    return [
        {"label": r["label"], "split": r["split"], "xy": list(r["xy"]) + [0.0] * (2 - len(r["xy"]))}
        for r in rows
    ]
