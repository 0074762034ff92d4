"""How good the classifier is, at the cost of the night's Test rows only.

Each night's Test rows are scored twice and the confusion counts kept (`evaluation.json` in the
night's statistics partition): by the model fitted before the night (*prequential*: the
previous night's model meets photos it never saw, the first sign of drift) and by the night's
own model (*refit*). Confusion counts add up, so an accuracy over the history is a sum over the
nights' counts, never a pass over the history's rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


@dataclass(frozen=True)
class Confusion:
    """(actual label, predicted label) -> rows."""

    counts: Counter = field(default_factory=Counter)

    def merge(self, other: Confusion) -> Confusion:
        return Confusion(self.counts + other.counts)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def correct(self) -> int:
        return sum(n for (actual, predicted), n in self.counts.items() if actual == predicted)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.rows if self.rows else None

    def per_class(self) -> dict[str, dict[str, float]]:
        """Precision, recall, F1 and support of every true or predicted label."""
        labels = sorted({label for pair in self.counts for label in pair})
        metrics = {}
        for label in labels:
            true_positive = self.counts.get((label, label), 0)
            actual = sum(n for (a, _), n in self.counts.items() if a == label)
            predicted = sum(n for (_, p), n in self.counts.items() if p == label)
            precision = true_positive / predicted if predicted else 0.0
            recall = true_positive / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            metrics[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
        return metrics

    def macro_f1(self) -> float | None:
        """Mean F1 over the labels that have rows (a label only ever predicted is no class)."""
        scored = [m["f1"] for m in self.per_class().values() if m["support"]]
        return sum(scored) / len(scored) if scored else None

    def summary(self) -> dict[str, Any]:
        return {
            "test_rows": self.rows,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1(),
        }

    def to_json(self) -> list[list]:
        return [[a, p, n] for (a, p), n in sorted(self.counts.items())]

    @classmethod
    def from_json(cls, rows: list[list]) -> Confusion:
        return cls(Counter({(a, p): int(n) for a, p, n in rows}))


def confusion(model: PipelineModel, test_rows: DataFrame) -> Confusion:
    """Score the rows (features_vector, label) and count (actual, predicted) pairs."""
    pairs = (
        model.transform(test_rows)
        .groupBy(F.col("label").alias("actual"), F.col("predicted_label").alias("predicted"))
        .count()
        .collect()
    )
    return Confusion(Counter({(r["actual"], r["predicted"]): r["count"] for r in pairs}))


@dataclass(frozen=True)
class NightEvaluation:
    """A night's Test rows scored by the model before it and by its own (None where there is no
    such model: fewer than two classes of Training rows)."""

    night: str
    prequential: Confusion | None
    refit: Confusion | None

    def to_json(self) -> dict[str, Any]:
        return {
            "night": self.night,
            "prequential": None if self.prequential is None else self.prequential.to_json(),
            "refit": None if self.refit is None else self.refit.to_json(),
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> NightEvaluation:
        prequential, refit = document["prequential"], document["refit"]
        return cls(
            document["night"],
            None if prequential is None else Confusion.from_json(prequential),
            None if refit is None else Confusion.from_json(refit),
        )


def history_totals(evaluations: list[NightEvaluation]) -> dict[str, Confusion]:
    """Every night's counts summed: prequential (each Test row judged by the model before its
    night) and refit (each by its own night's model)."""
    prequential, refit = Confusion(), Confusion()
    for evaluation in evaluations:
        if evaluation.refit is not None:
            refit = refit.merge(evaluation.refit)
        if evaluation.prequential is not None:
            prequential = prequential.merge(evaluation.prequential)
    return {"prequential": prequential, "refit": refit}
