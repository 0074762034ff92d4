"""The local environment is the one the jobs are written for."""

import sys
from importlib.metadata import PackageNotFoundError, version

import pytest


def test_pyspark_client_is_not_installed_over_pyspark():
    # apache-airflow-providers-apache-spark pulls pyspark-client, which rewrites pyspark's
    # Python files with another version's and breaks every UDF.
    with pytest.raises(PackageNotFoundError):
        version("pyspark-client")
    import pyspark

    assert pyspark.__version__ == version("pyspark")


@pytest.mark.spark
def test_a_pandas_udf_runs_in_a_python_worker(spark):
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def worker_python(values: pd.Series) -> pd.Series:
        return values.map(lambda _: sys.executable)

    (row,) = spark.range(1).select(worker_python("id").alias("python")).collect()
    assert row["python"] == sys.executable
