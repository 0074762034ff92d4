"""The classifier from kept statistics equals shrinkage LDA computed from the rows themselves.

The reference is the textbook closed form on the rows, in numpy only, written as scikit-learn's
`LinearDiscriminantAnalysis(solver="lsqr", shrinkage=a)` computes it
(sklearn/discriminant_analysis.py: `_class_cov` = priors-weighted biased class covariances,
`_cov` shrinks toward the diagonal in standardized space, `coef_ = lstsq(covariance_, means_.T)`,
`intercept_ = -1/2 diag(means_ coef_^T) + log(priors_)`): no statistic of ours is reused.
"""

from __future__ import annotations

import numpy as np
import pytest

from discriminant import fit_discriminant
from evaluation import Confusion
from moments import ClassSums, Moments

pytestmark = pytest.mark.unit


def rows_of(seed: int, classes: tuple[str, ...], per_class: int = 30, d: int = 12):
    """Rows of a few classes around distinct centres, both splits, correlated features."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(d, d))
    labels, splits, rows = [], [], []
    for index, label in enumerate(classes):
        centre = np.random.default_rng(100 + index).normal(0, 2, d)
        for i in range(per_class):
            labels.append(label)
            splits.append("Test" if i % 4 == 0 else "Training")
            rows.append(centre + rng.normal(size=d) @ mixing * 0.5)
    return np.array(labels), np.array(splits), np.array(rows, np.float32)


def reference_lda(labels, rows, shrinkage):
    """Shrinkage LDA of these (Training) rows, from the rows."""
    rows = rows.astype(np.float64)
    names = sorted(set(labels))
    priors = np.array([np.mean(labels == name) for name in names])
    means = np.array([rows[labels == name].mean(axis=0) for name in names])
    covariance = np.zeros((rows.shape[1], rows.shape[1]))
    for name, prior, mean in zip(names, priors, means):
        centred = rows[labels == name] - mean
        class_covariance = centred.T @ centred / len(centred)
        std = np.sqrt(np.diag(class_covariance))
        correlation = class_covariance / np.outer(std, std)
        shrunk = (1 - shrinkage) * correlation + shrinkage * np.eye(len(std))
        covariance += prior * shrunk * np.outer(std, std)
    coefficients = np.linalg.lstsq(covariance, means.T, rcond=None)[0].T
    intercepts = -0.5 * np.diag(means @ coefficients.T) + np.log(priors)
    return tuple(names), coefficients, intercepts


def statistics(labels, splits, rows):
    training = splits == "Training"
    return Moments.of(rows[training]), ClassSums.of(list(labels), list(splits), rows)


@pytest.mark.parametrize("shrinkage", [0.0, 0.1, 0.5])
def test_the_fit_from_statistics_is_the_closed_form_lda_of_the_rows(shrinkage):
    labels, splits, rows = rows_of(0, ("apple", "banana", "cherry", "kiwi"))
    model = fit_discriminant(*statistics(labels, splits, rows), shrinkage)
    training = splits == "Training"
    names, coefficients, intercepts = reference_lda(labels[training], rows[training], shrinkage)
    assert model.labels == names
    np.testing.assert_allclose(model.coefficients, coefficients, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.intercepts, intercepts, rtol=0, atol=1e-6)


def test_two_nights_merged_are_the_statistics_and_the_model_of_their_union():
    # The second night brings a class the first had not seen, and misses one.
    first = rows_of(1, ("apple", "banana", "cherry"))
    second = rows_of(2, ("banana", "cherry", "kiwi"), per_class=17)
    moments_1, sums_1 = statistics(*first)
    moments_2, sums_2 = statistics(*second)
    union = [np.concatenate(parts) for parts in zip(first, second)]
    moments_u, sums_u = statistics(*union)

    merged = sums_1.merge(sums_2)
    assert merged.labels == sums_u.labels == ("apple", "banana", "cherry", "kiwi")
    np.testing.assert_array_equal(merged.counts, sums_u.counts)
    np.testing.assert_allclose(merged.sums, sums_u.sums, rtol=1e-12)
    model = fit_discriminant(moments_1.merge(moments_2), merged, 0.1)
    whole = fit_discriminant(moments_u, sums_u, 0.1)
    np.testing.assert_allclose(model.coefficients, whole.coefficients, rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.intercepts, whole.intercepts, rtol=0, atol=1e-8)
    # ...and a night kept as bytes is the night.
    again = ClassSums.from_bytes(sums_2.to_bytes())
    assert again.labels == sums_2.labels and again.to_bytes() == sums_2.to_bytes()


def test_statistics_of_other_rows_are_refused():
    labels, splits, rows = rows_of(3, ("apple", "banana"))
    moments, sums = statistics(labels, splits, rows)
    with pytest.raises(ValueError, match="Training rows"):
        fit_discriminant(Moments.of(rows[:5]), sums, 0.1)
    one_class = labels == "apple"
    with pytest.raises(ValueError, match="2 classes or more"):
        fit_discriminant(*statistics(labels[one_class], splits[one_class], rows[one_class]), 0.1)


def test_confusion_counts_add_up_and_give_per_class_metrics():
    night_1 = Confusion.from_json([["a", "a", 1], ["a", "b", 1]])
    night_2 = Confusion.from_json([["b", "b", 2]])
    history = night_1.merge(night_2)
    assert (history.rows, history.correct, history.accuracy) == (4, 3, 0.75)
    metrics = history.per_class()
    assert metrics["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert metrics["b"]["precision"] == pytest.approx(2 / 3) and metrics["b"]["recall"] == 1.0
    assert Confusion.from_json(history.to_json()) == history
    assert Confusion().accuracy is None  # a night with no Test rows
