"""The installed packages are the ones the jobs are written for."""

from importlib.metadata import PackageNotFoundError, version

import pytest

pytestmark = pytest.mark.unit


def test_pyspark_client_is_not_installed_over_pyspark():
    # apache-airflow-providers-apache-spark pulls pyspark-client, which rewrites pyspark's
    # Python files with another version's and breaks every UDF.
    with pytest.raises(PackageNotFoundError):
        version("pyspark-client")
    import pyspark

    assert pyspark.__version__ == version("pyspark")
