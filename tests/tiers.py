"""The suite's tiers, and the guard that keeps the `unit` tier pure Python.

Every test has exactly one tier marker (declared in pyproject.toml), from the cheapest:
`unit` (no JVM, no Airflow metadata database, no emulator, no subprocess, no network), `dag`
(dag.test in-process), `spark` (a SparkSession), `e2e` (emulators and spark-submit over the
wire), `services` (a real `airflow standalone`). `make test-unit` runs the first alone.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterable

import pytest
from sqlalchemy.pool import Pool

TIERS = ("unit", "dag", "spark", "e2e", "services")  # the order the suite runs them in


class TierViolation(BaseException):
    """A unit test reached outside Python. A BaseException, like pytest's own outcomes, so that
    code catching Exception (a retry loop, a 'connection missing' check) cannot hide it."""


def tier_problem(nodeid: str, marker_names: Iterable[str]) -> str | None:
    """Why a test's markers do not name exactly one tier, or None."""
    tiers = sorted({name for name in marker_names if name in TIERS}, key=TIERS.index)
    if len(tiers) == 1:
        return None
    if not tiers:
        return (
            f"{nodeid} has no tier marker: set `pytestmark = pytest.mark.<tier>` in its module, "
            f"one of {', '.join(TIERS)} (see tests/tiers.py)"
        )
    return f"{nodeid} has several tier markers ({', '.join(tiers)}): split its module"


# With several workers (`make test`: pytest-xdist, one module per worker at a time) the unit
# tier still goes first, then the costliest tier first: the services module alone takes a third
# of the suite, so it must start early while the other worker goes through the rest.
PARALLEL_ORDER = ("unit", "services", "e2e", "spark", "dag")


def tier_rank(marker_names: Iterable[str], parallel: bool = False) -> int:
    """Where a test runs in the suite: unit tests first (fast feedback, and no session-wide JVM
    or database exists yet while the guard is on); then by cost, cheapest first when one
    process runs them all, costliest first when several share them."""
    order = PARALLEL_ORDER if parallel else TIERS
    ranks = [order.index(name) for name in marker_names if name in order]
    return min(ranks, default=len(order))


def forbid_outside_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a unit test fail loudly when it starts a process, opens a network connection, starts
    a JVM or opens a database (the Airflow metadata database is SQLAlchemy over SQLite)."""

    def refuse(what: str):
        def refused(*_args, **_kwargs):
            raise TierViolation(
                f"a unit test may not {what}: give its module another tier marker "
                f"({', '.join(TIERS[1:])}) or keep it pure Python"
            )

        return refused

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse("start a subprocess"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv", "execve"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(f"call os.{name}"))

    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(original):
        def guarded_connect(sock, address):
            if sock.family != socket.AF_UNIX:
                refuse(f"connect to {address!r} (network, emulator or JVM gateway)")()
            return original(sock, address)

        return guarded_connect

    monkeypatch.setattr(socket.socket, "connect", guarded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
    monkeypatch.setattr(sqlite3, "connect", refuse("open an SQLite database"))
    # Every SQLAlchemy connection, Airflow's metadata database's included.
    monkeypatch.setattr(Pool, "connect", refuse("connect to a database (Airflow's?)"))
    if "pyspark" in sys.modules:  # a JVM a previous test started must not be reused either
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        monkeypatch.setattr(SparkContext, "_ensure_initialized", refuse("start or use a JVM"))
        monkeypatch.setattr(SparkSession.Builder, "getOrCreate", refuse("start or use a JVM"))
