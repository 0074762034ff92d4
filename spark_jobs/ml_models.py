"""Spark ML models built from their numbers, no fitting pass: pca's pipeline; the JVM constructor
that discriminant.py's classifier uses too."""

from __future__ import annotations

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.feature import PCAModel, StandardScalerModel
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import SparkSession

from principal_components import PrincipalComponents


def java_model(spark: SparkSession, wrapper, java_class: str, uid: str, *arguments):
    """A Spark ML model from its numbers, through its (package-private) JVM constructor."""
    from pyspark.ml.common import _py2java

    context = spark.sparkContext
    constructor = context._jvm
    for part in java_class.split("."):
        constructor = getattr(constructor, part)
    return wrapper(constructor(uid, *(_py2java(context, a) for a in arguments)))


def spark_pipeline(spark: SparkSession, pcs: PrincipalComponents, k: int) -> PipelineModel:
    """[scale ->] project on the first k components -> centre: a saveable PipelineModel, built
    from the numbers, no fitting pass. Centred by the Training rows' mean, like any PCA fitted
    on them: a photo projects the same whichever night it is projected in."""
    components = pcs.components[:, :k]
    pca = java_model(
        spark,
        PCAModel,
        "org.apache.spark.ml.feature.PCAModel",
        "fruits_pca",
        DenseMatrix(*components.shape, components.ravel("F")),
        DenseVector(pcs.explained_variance[:k]),
    )
    input_column = "scaled" if pcs.std is not None else "features_vector"
    pca._set(k=k, inputCol=input_column, outputCol="projected")
    centre_of_training = components.T @ pcs.mean
    centre = _scaler(spark, "fruits_centre", "projected", "pca_vector", mean=centre_of_training)
    stages = [pca, centre]
    if pcs.std is not None:
        stages.insert(0, _scaler(spark, "fruits_scale", "features_vector", "scaled", std=pcs.std))
    for stage in stages:
        stage._transfer_params_to_java()
    return PipelineModel(stages=stages)


def _scaler(spark, uid, input_column, output_column, mean=None, std=None) -> StandardScalerModel:
    """A StandardScalerModel that either subtracts `mean` or divides by `std` (0 where a std is 0,
    as Spark's own scaler does)."""
    with_mean = mean is not None
    size = len(mean) if with_mean else len(std)
    model = java_model(
        spark,
        StandardScalerModel,
        "org.apache.spark.ml.feature.StandardScalerModel",
        uid,
        DenseVector(np.ones(size) if std is None else std),
        DenseVector(mean if with_mean else np.zeros(size)),
    )
    model._set(
        inputCol=input_column, outputCol=output_column, withMean=with_mean, withStd=not with_mean
    )
    return model
