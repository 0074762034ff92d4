"""What changed tonight: `report.json` and `report.png`, from statistics the classifier keeps.

The night against the history before it: its class mix and new classes, the quarantine rate
(featurize's manifest), the prequential accuracy and its trend over the last nights, and how far
each class's mean moved, in the night's PCA space, in units of the history's within-class
spread (the root mean square distance of a Training row to its class mean). Everything is read
from the kept statistics and the night's own rows: O(new) plus O(nights x d^2).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.feature import PCAModel, StandardScalerModel

from discriminant import ClassSums, within_class_scatter
from evaluation import NightEvaluation
from moments import Moments

TREND_NIGHTS = 14  # the accuracy trend shows this many nights at most
PLOT_CLASSES = 15  # each bar chart shows the classes that moved most


@dataclass(frozen=True)
class History:
    """The nights before tonight, summarised."""

    moments: Moments  # of their Training rows
    classes: ClassSums


def linear_part(model: PipelineModel, d: int) -> np.ndarray:
    """The (k, d) matrix of pca's model without its offsets: scaling then the components (the
    centring only shifts every point alike, so no difference of two points sees it)."""
    matrix = np.eye(d)
    for stage in model.stages:
        if isinstance(stage, PCAModel):
            matrix = stage.pc.toArray().T @ matrix
        elif isinstance(stage, StandardScalerModel) and stage.getWithStd():
            std = stage.std.toArray()
            matrix = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)[:, None] * matrix
    return matrix


def mean_shift(
    history: History, tonight: ClassSums, projection: np.ndarray
) -> dict[str, Any] | None:
    """How far tonight's mean moved from the history's, overall and per class present in both,
    in PCA space; None on the first night."""
    if history.moments.n == 0:
        return None
    counts, totals = history.classes.split("Training")
    present = counts > 0
    means = totals[present] / counts[present, None]
    scatter = within_class_scatter(history.moments, counts[present], means)
    spread = float(np.sqrt(max(np.sum((projection @ scatter) * projection), 0) / history.moments.n))

    def moved(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        distance = float(np.linalg.norm(projection @ (a - b)))
        return {"distance": distance, "in_spreads": distance / spread if spread else None}

    before, now = history.classes.means(), tonight.means()
    overall_before = history.classes.sums.sum(axis=(0, 1)) / history.classes.counts.sum()
    overall_now = tonight.sums.sum(axis=(0, 1)) / max(tonight.counts.sum(), 1)
    return {
        "space": f"PCA, the night's model (k = {projection.shape[0]})",
        "unit": "the history's within-class spread (RMS distance of a row to its class mean)",
        "spread": spread,
        "overall": moved(overall_now, overall_before) if tonight.counts.sum() else None,
        "per_class": {
            label: moved(now[label], before[label]) for label in sorted(now) if label in before
        },
    }


def class_mix(history: ClassSums, tonight: ClassSums) -> list[dict[str, Any]]:
    before, now = history.rows_per_class(), tonight.rows_per_class()
    total_before, total_now = sum(before.values()), sum(now.values())
    return [
        {
            "label": label,
            "night_rows": now.get(label, 0),
            "night_share": now.get(label, 0) / total_now if total_now else 0.0,
            "history_rows": before.get(label, 0),
            "history_share": before.get(label, 0) / total_before if total_before else 0.0,
        }
        for label in sorted(set(before) | set(now))
    ]


def accuracy_trend(evaluations: list[NightEvaluation]) -> list[dict[str, Any]]:
    return [
        {
            "night": e.night,
            "prequential": None if e.prequential is None else e.prequential.accuracy,
            "refit": None if e.refit is None else e.refit.accuracy,
            "test_rows": 0 if e.refit is None else e.refit.rows,
        }
        for e in evaluations[-TREND_NIGHTS:]
    ]


def build_report(
    night: str,
    history: History,
    tonight: ClassSums,
    featurized: dict[str, int],
    evaluations: list[NightEvaluation],
    projection: np.ndarray,
) -> dict[str, Any]:
    """`featurized`: featurize's manifest counts (read, featurized, quarantined)."""
    before = history.classes.rows_per_class()
    new_classes = sorted(label for label in tonight.rows_per_class() if label not in before)
    trend = accuracy_trend(evaluations)
    earlier = [t["prequential"] for t in trend[:-1] if t["prequential"] is not None]
    prequential = trend[-1]["prequential"] if trend else None
    return {
        "night": night,
        "nights_before": len(evaluations) - 1,
        "photos": {
            **featurized,
            "quarantine_rate": featurized["quarantined"] / featurized["read"]
            if featurized.get("read")
            else 0.0,
        },
        "classes": {"night": len(tonight.labels), "history": len(before), "new": new_classes},
        "class_mix": class_mix(history.classes, tonight),
        "prequential_accuracy": prequential,
        "prequential_vs_trend": (
            prequential - sum(earlier) / len(earlier)
            if earlier and prequential is not None
            else None
        ),
        "accuracy_trend": trend,
        "mean_shift": mean_shift(history, tonight, projection),
    }


# --------------------------------------------------------------------------------------------
# The picture
# --------------------------------------------------------------------------------------------


def report_png(report: dict[str, Any]) -> bytes:
    """Four panels: the night's figures, the accuracy trend, the class mix, the mean shift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(16, 10), layout="constrained")
    figure.suptitle(f"Fruits! night {report['night']}", fontsize=17, fontweight="bold")
    _figures_panel(axes[0, 0], report)
    _trend_panel(axes[0, 1], report["accuracy_trend"])
    _mix_panel(axes[1, 0], report["class_mix"], set(report["classes"]["new"]))
    _shift_panel(axes[1, 1], report["mean_shift"])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _figures_panel(axes, report: dict[str, Any]) -> None:
    photos, classes = report["photos"], report["classes"]
    change = report["prequential_vs_trend"]
    new = classes["new"]
    lines = [
        ("photos read", f"{photos['read']:,}"),
        ("quarantined", f"{photos['quarantined']:,} ({_percent(photos['quarantine_rate'])})"),
        (
            "prequential accuracy",
            _percent(report["prequential_accuracy"])
            + ("" if change is None else f"  ({change * 100:+.1f} pts vs trend)"),
        ),
        ("refit accuracy", _percent(report["accuracy_trend"][-1]["refit"])),
        ("classes tonight / before", f"{classes['night']} / {classes['history']}"),
        ("new classes", f"{len(new)}" + (f": {_names(new)}" if new else "")),
        ("nights before", f"{report['nights_before']}"),
    ]
    axes.axis("off")
    for row, (name, value) in enumerate(lines):
        y = 0.9 - row * 0.13
        axes.text(0.0, y, name, fontsize=13, color="dimgray", transform=axes.transAxes)
        axes.text(0.42, y, value, fontsize=14, fontweight="bold", transform=axes.transAxes)
    axes.set_title("The night", loc="left", fontsize=14)


def _names(labels: list[str], shown: int = 2) -> str:
    names = ", ".join(label[:18] for label in labels[:shown])
    return names + (f" +{len(labels) - shown}" if len(labels) > shown else "")


def _trend_panel(axes, trend: list[dict[str, Any]]) -> None:
    nights = [t["night"][5:] for t in trend]  # MM-DD
    for key, style in (("prequential", "o-"), ("refit", "s--")):
        values = [np.nan if t[key] is None else t[key] for t in trend]
        axes.plot(nights, values, style, label=key, markersize=7)
    axes.set_ylim(max(0.0, np.nanmin([t["refit"] or 1 for t in trend] + [1]) - 0.1), 1.005)
    axes.set(ylabel="accuracy")
    axes.set_title(
        "Accuracy on each night's Test photos\nprequential = the model of the night before",
        loc="left",
        fontsize=14,
    )
    axes.yaxis.set_major_formatter(matplotlib_percent())
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    axes.tick_params(axis="x", rotation=45)


def _mix_panel(axes, mix: list[dict[str, Any]], new: set[str]) -> None:
    moved = sorted(mix, key=lambda m: abs(m["night_share"] - m["history_share"]), reverse=True)
    shown = moved[:PLOT_CLASSES][::-1]
    y = np.arange(len(shown))
    axes.barh(y + 0.2, [m["history_share"] for m in shown], 0.4, label="history", color="silver")
    axes.barh(y - 0.2, [m["night_share"] for m in shown], 0.4, label="tonight", color="tab:blue")
    axes.set_yticks(y, [m["label"] + (" (new)" if m["label"] in new else "") for m in shown])
    axes.xaxis.set_major_formatter(matplotlib_percent())
    axes.set_xlabel("share of the photos")
    axes.set_title(
        f"Class mix vs the history: the {len(shown)} largest changes", loc="left", fontsize=14
    )
    axes.legend(loc="lower right", bbox_to_anchor=(1, 1), ncol=2, frameon=False)


def _shift_panel(axes, shift: dict[str, Any] | None) -> None:
    axes.set_title(
        "Class mean shift vs the history\n(PCA space, in within-class spreads)",
        loc="left",
        fontsize=14,
    )
    if not shift or not shift["per_class"]:
        axes.axis("off")
        axes.text(0.5, 0.5, "no history to compare with", ha="center", fontsize=14)
        return
    per_class = sorted(shift["per_class"].items(), key=lambda item: item[1]["in_spreads"] or 0)
    shown = per_class[-PLOT_CLASSES:]
    values = [m["in_spreads"] or 0 for _, m in shown]
    colours = ["tab:red" if v >= 1 else "tab:orange" if v >= 0.5 else "tab:green" for v in values]
    axes.barh([label for label, _ in shown], values, color=colours)
    axes.axvline(1.0, color="tab:red", linestyle=":", label="one spread")
    overall = shift["overall"]
    if overall and overall["in_spreads"] is not None:
        axes.axvline(overall["in_spreads"], color="black", linestyle="--", label="all photos")
    axes.legend(loc="lower right")


def matplotlib_percent():
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0)
