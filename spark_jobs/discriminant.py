"""The nightly classifier: a linear discriminant fitted exactly from statistics kept per night.

Each night keeps, next to its Training moments, the row count and feature sum of every class in
each split (`moments.py`: `ClassSums`, `class_sums.npz`). Merged over the nights they give the
history's class means and, with the merged moments, its pooled within-class scatter

    S_w = M2 - sum_c n_c (mu_c - mu)(mu_c - mu)^T      (total scatter minus between-class)

so the fit costs O(nights x d^2), never a pass over the history's rows. The discriminant is
scikit-learn's shrinkage LDA (`solver="lsqr"`, `shrinkage=a`, priors = class frequencies):

    Sigma = (1 - a) S_w / n + a diag(S_w / n),   w_c = Sigma^+ mu_c,
    b_c = -1/2 mu_c . w_c + log(n_c / n)

and softmax(W x + b) is its posterior, which is what a multinomial logistic regression
computes: the model is a Spark ML `LogisticRegressionModel` with W and b, in a PipelineModel
that names the predicted label. On the shared sample a = 0.1 scores as well as the logistic
regression refitted on PCA@95% did (docs/performance.md, "Quality").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.ml.feature import IndexToString
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import SparkSession

from ml_models import java_model
from moments import ClassSums, Moments

FEATURES_VECTOR = "features_vector"  # array_to_vector(features): what the model reads
PREDICTED_LABEL = "predicted_label"


@dataclass(frozen=True)
class Discriminant:
    labels: tuple[str, ...]
    coefficients: np.ndarray  # (classes, d): w_c
    intercepts: np.ndarray  # (classes,): b_c


def within_class_scatter(moments: Moments, counts: np.ndarray, means: np.ndarray) -> np.ndarray:
    """sum over rows of (x - mu_class)(x - mu_class)^T, from the moments of the same rows."""
    centred = means - moments.mean
    return moments.m2 - (centred.T * counts) @ centred


def fit_discriminant(moments: Moments, sums: ClassSums, shrinkage: float) -> Discriminant:
    """Shrinkage LDA of the Training rows summarised by `moments` and `sums` (the same rows)."""
    counts, totals = sums.split("Training")
    present = counts > 0
    labels = tuple(label for label, kept in zip(sums.labels, present) if kept)
    counts, totals = counts[present], totals[present]
    if int(counts.sum()) != moments.n:
        raise ValueError(f"class sums of {counts.sum()} Training rows, moments of {moments.n}")
    if len(labels) < 2:
        raise ValueError(f"a classifier needs Training rows of 2 classes or more, got {labels}")
    means = totals / counts[:, None]
    covariance = within_class_scatter(moments, counts, means) / moments.n
    shrunk = (1 - shrinkage) * covariance + shrinkage * np.diag(np.diag(covariance))
    # Least squares, as scikit-learn's lsqr solver: features constant in every class (dead
    # MobileNetV2 channels) make Sigma singular and get no weight.
    coefficients = np.linalg.lstsq(shrunk, means.T, rcond=None)[0].T
    intercepts = -0.5 * np.einsum("cd,cd->c", means, coefficients) + np.log(counts / moments.n)
    return Discriminant(labels, coefficients, intercepts)


def spark_model(spark: SparkSession, discriminant: Discriminant) -> PipelineModel:
    """features_vector -> prediction, probability -> predicted_label: one `transform`.

    Built through LogisticRegressionModel's JVM constructor (uid, coefficientMatrix,
    interceptVector, numClasses, isMultinomial), which Spark 2.1 to 4.x all have
    (apache/spark mllib/src/main/scala/org/apache/spark/ml/classification/LogisticRegression.scala).
    """
    classes, d = discriminant.coefficients.shape
    regression = java_model(
        spark,
        LogisticRegressionModel,
        "org.apache.spark.ml.classification.LogisticRegressionModel",
        "fruits_discriminant",
        DenseMatrix(classes, d, discriminant.coefficients.ravel("F")),
        DenseVector(discriminant.intercepts),
        classes,
        True,
    )
    regression._set(featuresCol=FEATURES_VECTOR)
    regression._transfer_params_to_java()
    names = IndexToString(
        inputCol="prediction", outputCol=PREDICTED_LABEL, labels=list(discriminant.labels)
    )
    return PipelineModel(stages=[regression, names])
