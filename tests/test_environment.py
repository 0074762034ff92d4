"""The local environment is the one the jobs are written for."""

import sys

import pytest

pytestmark = pytest.mark.spark


def test_a_pandas_udf_runs_in_a_python_worker(spark):
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def worker_python(values: pd.Series) -> pd.Series:
        return values.map(lambda _: sys.executable)

    (row,) = spark.range(1).select(worker_python("id").alias("python")).collect()
    assert row["python"] == sys.executable
