"""Spark ML models built from their numbers, no fitting pass."""

from __future__ import annotations

from pyspark.sql import SparkSession


def java_model(spark: SparkSession, wrapper, java_class: str, uid: str, *arguments):
    """A Spark ML model from its numbers, through its (package-private) JVM constructor."""
    from pyspark.ml.common import _py2java

    context = spark.sparkContext
    constructor = context._jvm
    for part in java_class.split("."):
        constructor = getattr(constructor, part)
    return wrapper(constructor(uid, *(_py2java(context, a) for a in arguments)))
