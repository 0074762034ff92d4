"""The local environment is the one the jobs are written for."""

import sys

import pytest

pytestmark = pytest.mark.spark


def test_a_pandas_udf_runs_in_a_python_worker(spark):
    """The UDF runs in another process, a Python worker, with the driver's Python and pyarrow
    (Arrow batches cross between them) and the jobs' modules on its path."""
    import json
    import os
    from importlib.util import find_spec

    import pandas as pd
    import pyarrow
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def worker(values: pd.Series) -> pd.Series:
        import pyarrow as worker_pyarrow

        facts = [os.getpid(), sys.prefix, sys.version, worker_pyarrow.__version__]
        return values.map(lambda _: json.dumps([*facts, find_spec("featurize").origin]))

    (row,) = spark.range(1).select(worker("id").alias("facts")).collect()
    pid, prefix, python, arrow, featurize = json.loads(row["facts"])
    assert pid != os.getpid()
    assert (prefix, python, arrow) == (sys.prefix, sys.version, pyarrow.__version__)
    assert featurize == find_spec("featurize").origin
