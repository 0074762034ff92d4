"""The suite's tiers hold: every test names one, and a unit test cannot reach outside Python."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess

import pytest

from tiers import TierViolation, tier_problem, tier_rank

pytestmark = pytest.mark.unit


def test_a_test_without_exactly_one_tier_is_named():
    assert tier_problem("t.py::a", ["unit", "parametrize"]) is None
    assert "t.py::a has no tier marker" in tier_problem("t.py::a", ["parametrize", "skipif"])
    assert "several tier markers (unit, spark)" in tier_problem("t.py::a", ["spark", "unit"])


def test_the_tiers_run_cheapest_first():
    ranks = [tier_rank([name]) for name in ("unit", "dag", "spark", "e2e", "services")]
    assert ranks == sorted(ranks) and len(set(ranks)) == 5
    assert tier_rank(["skipif"]) > tier_rank(["services"])  # untiered last: it fails anyway


def test_parallel_workers_take_the_unit_tier_then_the_costliest_first():
    order = ("unit", "services", "e2e", "spark", "dag")
    ranks = [tier_rank([name], parallel=True) for name in order]
    assert ranks == sorted(ranks) and len(set(ranks)) == 5
    assert tier_rank(["skipif"], parallel=True) > tier_rank(["dag"], parallel=True)


def test_this_suite_has_a_tier_on_every_test(request):
    untiered = [
        problem
        for item in request.session.items
        if (problem := tier_problem(item.nodeid, (m.name for m in item.iter_markers())))
    ]
    assert untiered == []


def test_a_unit_test_cannot_start_a_process():
    with pytest.raises(TierViolation, match="may not start a subprocess"):
        subprocess.run(["true"], check=False)
    with pytest.raises(TierViolation, match="os.system"):
        os.system("true")  # noqa: S605, S607


def test_a_unit_test_cannot_connect_to_the_network_or_an_emulator():
    with socket.socket() as sock, pytest.raises(TierViolation, match="127.0.0.1"):
        sock.connect(("127.0.0.1", 9))
    with pytest.raises(TierViolation):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET: never routed


def test_a_unit_test_cannot_open_a_database(tmp_path):
    import sqlalchemy

    with pytest.raises(TierViolation, match="SQLite"):
        sqlite3.connect(tmp_path / "airflow.db")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    with pytest.raises(TierViolation, match="database"):
        engine.connect()


def test_a_unit_test_cannot_start_a_jvm():
    from pyspark.sql import SparkSession

    with pytest.raises(TierViolation):
        SparkSession.builder.master("local[1]").getOrCreate()


def test_code_that_catches_every_exception_cannot_hide_the_violation():
    # e.g. a hook's "connection missing?" check catching Exception
    with pytest.raises(TierViolation), contextlib.suppress(Exception):
        subprocess.run(["true"], check=False)
