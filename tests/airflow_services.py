"""Airflow 3 as real services, for end-to-end tests: `airflow standalone` as a process.

Standalone runs the api-server, scheduler (LocalExecutor: each task in its own process, talking
to the api-server's execution API), dag-processor and triggerer as child processes, with a
private AIRFLOW_HOME and SQLite database, this repository's dags/ and plugins/, and the
api-server on a free loopback port. `AirflowServices` is a small client of its REST API v2
(trigger, wait, backfill, unpause, Variables, task logs) and of its CLI. On exit every process
it started is stopped by pid, the whole tree, and what is left is reported: the tests assert
nothing is.

    with airflow_standalone(home, {...connections, Variable...}, "fruits_pipeline") as af:
        run = af.wait_for_run(af.trigger({"platform": "local"}, run_after=...))
        assert run.state == "success", af.explain(run)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psutil

from localdev.emulators import airflow_home_env, free_port, wait_until

AIRFLOW = Path(sys.executable).with_name("airflow")
FINISHED = ("success", "failed")
UNSUCCESSFUL_TASKS = ("failed", "upstream_failed", "up_for_retry")
COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")


SQLITE_LOCK_TRIES = 10


class ApiError(AssertionError):
    """The api-server answered with an HTTP error; the message has its body."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Run:
    """A DAG run as the REST API reports it, with its tasks' states."""

    run_id: str
    state: str
    run_type: str
    logical_date: str | None
    run_after: str
    conf: dict[str, Any]
    start_date: str | None = None  # when the run was set running (a backfill: all at once)
    end_date: str | None = None
    tasks: dict[str, str | None] = field(default_factory=dict)
    task_starts: dict[str, str | None] = field(default_factory=dict)

    @property
    def run_after_time(self) -> datetime:
        return datetime.fromisoformat(self.run_after)

    def task_started(self, task_id: str) -> datetime:
        return datetime.fromisoformat(self.task_starts[task_id])

    @property
    def ended(self) -> datetime:
        return datetime.fromisoformat(self.end_date)


def standalone_env(home: Path, api_port: int, env: dict[str, str]) -> dict[str, str]:
    """Everything the components must agree on, on top of the caller's env (connections, ...)."""
    api = f"http://127.0.0.1:{api_port}"
    return {
        **os.environ,
        **env,
        **airflow_home_env(home),
        # standalone starts its components as `airflow ...` found on PATH: this virtualenv's.
        "PATH": os.pathsep.join([str(AIRFLOW.parent), os.environ.get("PATH", "")]),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        # One secret for every component, so the tokens one signs the others accept.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        # The log servers' fixed default ports would collide with any other Airflow here.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    }


class AirflowServices:
    """A client of one running standalone: its REST API v2 and its CLI."""

    def __init__(
        self, api_url: str, env: dict[str, str], dag_id: str, log_path: Path, standalone_pid: int
    ):
        self.api_url = api_url
        self.standalone_pid = standalone_pid
        self.env = env
        self.dag_id = dag_id
        self.log_path = log_path  # standalone's own output: every component's lines
        self.ports = [int(api_url.rsplit(":", 1)[1])] + [
            int(env[f"AIRFLOW__LOGGING__{name}_LOG_SERVER_PORT"]) for name in ("WORKER", "TRIGGER")
        ]
        self.leftovers: list[psutil.Process] = []  # filled when the services are stopped
        self._token: str | None = None

    # --- HTTP --------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(  # noqa: S310 (our loopback api-server)
            self.api_url + path, data=data, headers=headers, method=method
        )
        # SQLite allows one writer: the api-server answers 503 "Database is locked" when the
        # scheduler holds it (backfill creation says so), or 500 "Database error" with the cause
        # hidden (seen for POST /backfills under load). Its transaction was rolled back: such a
        # request is tried again.
        for attempt in range(SQLITE_LOCK_TRIES):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    text = response.read().decode()
                return json.loads(text) if text else None
            except TimeoutError:  # an overloaded machine: a read may be asked again
                if method != "GET" or attempt + 1 == SQLITE_LOCK_TRIES:
                    raise
                continue
            except urllib.error.HTTPError as error:
                detail = error.read().decode()[:2000]
                busy = "locked" in detail or (error.code == 500 and "Database error" in detail)
                if busy and attempt + 1 < SQLITE_LOCK_TRIES:
                    time.sleep(3)
                    continue
                message = f"{method} {path} -> HTTP {error.code}: {detail}"
                raise ApiError(message, error.code) from None
        raise AssertionError("unreachable")

    @property
    def token(self) -> str:
        """With SIMPLE_AUTH_MANAGER_ALL_ADMINS, GET /auth/token hands an admin token out."""
        if self._token is None:
            self._token = self.request("GET", "/auth/token", auth=False)["access_token"]
        return self._token

    def check_components(self) -> None:
        """Fail now if a component has died: standalone does not restart one (its threads only
        read their output), and a dead scheduler would leave every run queued until a timeout.
        Seen: a scheduler killed by an ObjectDeletedError on a backfill run that the api-server
        deleted after a "database is locked" (airflow/models/backfill.py
        `_cleanup_partial_backfill`, scheduler_job_runner.py `_schedule_all_dag_runs`)."""
        try:
            children = psutil.Process(self.standalone_pid).children()
        except psutil.NoSuchProcess:
            children = []
        titles = []  # `airflow scheduler`; the api-server retitles itself "airflow api_server"
        for child in children:
            with _gone_is_fine():
                if child.status() != psutil.STATUS_ZOMBIE:
                    titles.append(" ".join(child.cmdline()).replace("_", "-"))
        dead = [name for name in COMPONENTS if not any(name in title for title in titles)]
        if dead:
            lines = self.log_path.read_text(errors="replace").splitlines()
            own = [line for line in lines if line.split(" ", 1)[0] in dead][-60:]
            raise RuntimeError(
                f"Airflow's {', '.join(dead)} died; standalone does not restart it. "
                "Its last lines:\n" + "\n".join(own)
            )

    # --- the DAG -------------------------------------------------------------------------------
    def unpause(self) -> None:
        self.request("PATCH", f"/api/v2/dags/{self.dag_id}", {"is_paused": False})

    def set_variable(self, key: str, value: Any) -> None:
        """In the metadata database. An AIRFLOW_VAR_<KEY> in the services' env shadows it."""
        body = {"key": key, "value": value if isinstance(value, str) else json.dumps(value)}
        try:
            self.request("PATCH", f"/api/v2/variables/{key}", body)
        except ApiError as error:
            if error.status != 404:
                raise
            try:
                self.request("POST", "/api/v2/variables", body)
            except ApiError as again:  # made meanwhile (a PATCH that lost a SQLite lock race)
                if again.status != 409:
                    raise
                self.request("PATCH", f"/api/v2/variables/{key}", body)

    def trigger(
        self,
        conf: dict | None = None,
        logical_date: datetime | None = None,
        run_after: datetime | None = None,
    ) -> str:
        """POST dagRuns; `logical_date` None is Airflow 3's default. Returns the run id."""
        body: dict[str, Any] = {
            "logical_date": logical_date.isoformat() if logical_date else None,
            "conf": conf or {},
        }
        if run_after is not None:
            body["run_after"] = run_after.isoformat()
        return self.request("POST", f"/api/v2/dags/{self.dag_id}/dagRuns", body)["dag_run_id"]

    def backfill(
        self,
        from_date: date | datetime,
        to_date: date | datetime,
        conf: dict | None = None,
        max_active_runs: int = 10,
        reprocess: str = "none",
    ) -> int:
        """POST /api/v2/backfills over logical dates in [from_date, to_date]; its id.

        `max_active_runs` is the backfill's own (10 is the REST API's default; the DAG's does
        not cap a backfill). `reprocess` "completed" runs again the dates that have a run."""
        body = {
            "dag_id": self.dag_id,
            "from_date": _iso(from_date),
            "to_date": _iso(to_date),
            "dag_run_conf": conf or {},
            "max_active_runs": max_active_runs,
            "reprocess_behavior": reprocess,
        }
        try:
            return self.request("POST", "/api/v2/backfills", body)["id"]
        except ApiError as error:
            # A POST answered 500 under SQLite's one writer may still have created it: the retry
            # then gets 409. That backfill is the one asked for (none other is ever created here).
            if error.status != 409 or "already a running backfill" not in str(error):
                raise
        found = self.request("GET", f"/api/v2/backfills?dag_id={self.dag_id}")["backfills"]
        (running,) = [item for item in found if not item["completed_at"]]
        return running["id"]

    def runs(self, run_type: str | None = None) -> list[Run]:
        query = "?order_by=run_after&limit=100" + (f"&run_type={run_type}" if run_type else "")
        found = self.request("GET", f"/api/v2/dags/{self.dag_id}/dagRuns{query}")["dag_runs"]
        return [_run(item) for item in found]

    def run(self, run_id: str) -> Run:
        quoted = urllib.parse.quote(run_id, safe="")
        item = self.request("GET", f"/api/v2/dags/{self.dag_id}/dagRuns/{quoted}")
        tasks = self.request(
            "GET", f"/api/v2/dags/{self.dag_id}/dagRuns/{quoted}/taskInstances?limit=100"
        )["task_instances"]
        return _run(item, tasks)

    def wait_for_run(self, run_id: str, timeout: float = 900) -> Run:
        """Poll until the run succeeds or fails; its final state and its tasks' states."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_components()
            run = self.run(run_id)
            if run.state in FINISHED:
                return run
            time.sleep(2)
        raise TimeoutError(f"run {run_id} still {run.state} after {timeout:.0f} s: {run.tasks}")

    def wait_for_backfill(self, backfill_id: int, timeout: float = 1800) -> None:
        """Poll until the backfill has completed (every run it made or re-ran is done)."""

        def completed() -> bool:
            self.check_components()
            return bool(self.request("GET", f"/api/v2/backfills/{backfill_id}")["completed_at"])

        wait_until(completed, f"backfill {backfill_id} of {self.dag_id}", timeout)

    def wait_for_new_run(self, run_type: str, known: set[str], timeout: float = 120) -> str:
        """The id of the first run of that type not in `known` (e.g. the scheduler's)."""
        found: list[str] = []

        def appeared() -> bool:
            self.check_components()
            found[:] = [r.run_id for r in self.runs(run_type) if r.run_id not in known]
            return bool(found)

        wait_until(appeared, f"a new {run_type} run of {self.dag_id}", timeout)
        return found[0]

    def try_number(self, run_id: str, task_id: str) -> int:
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"/api/v2/dags/{self.dag_id}/dagRuns/{quoted}/taskInstances/{task_id}"
        return self.request("GET", path)["try_number"]

    def task_log(self, run_id: str, task_id: str, try_number: int | None = None) -> str:
        """One try's log, or (by default) every try's, in order: a task may have been retried
        (its retry policy, or a scheduler that reset it), and what it did is in all of them. A
        try with no record (reset before it ran) has no log."""
        quoted = urllib.parse.quote(run_id, safe="")
        tries = [try_number] if try_number else range(1, self.try_number(run_id, task_id) + 1)
        said = []
        for number in tries:
            path = (
                f"/api/v2/dags/{self.dag_id}/dagRuns/{quoted}/taskInstances/{task_id}"
                f"/logs/{number}?full_content=true"
            )
            try:
                content = self.request("GET", path)["content"]
            except ApiError as error:
                if error.status != 404 or try_number:
                    raise
                said.append(f"--- try {number}: no record ---")
                continue
            said.append(f"--- try {number} ---")
            said.extend(_log_line(entry) for entry in content)
        return "\n".join(said)

    def explain(self, run: Run, tail: int = 60) -> str:
        """For an assertion message: the run's tasks, and the end of each failed task's log."""
        parts = [f"run {run.run_id}: {run.state}; tasks {run.tasks}"]
        for task_id, state in run.tasks.items():
            if state in UNSUCCESSFUL_TASKS and state != "upstream_failed":
                tries = self.try_number(run.run_id, task_id)
                lines = self.task_log(run.run_id, task_id, max(tries, 1)).splitlines()
                parts.append(f"--- {task_id} (try {tries}) ---\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts)

    def xcom(self, run_id: str, task_id: str, key: str = "return_value") -> Any:
        quoted = urllib.parse.quote(run_id, safe="")
        path = (
            f"/api/v2/dags/{self.dag_id}/dagRuns/{quoted}/taskInstances/{task_id}"
            f"/xcomEntries/{key}?deserialize=true"
        )
        return self.request("GET", path)["value"]

    # --- CLI -----------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`airflow <args>` against these services (same home, database and settings)."""
        return subprocess.run(
            [str(AIRFLOW), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _log_line(entry: Any) -> str:
    """A structured log entry as a line; an exception's type and message included."""
    if not isinstance(entry, dict):
        return str(entry)
    errors = [f"{e['exc_type']}: {e['exc_value']}" for e in entry.get("error_detail") or []]
    return " | ".join([str(entry.get("event", "")), *errors])


def _iso(value: date | datetime) -> str:
    return value.isoformat() if isinstance(value, datetime) else f"{value.isoformat()}T00:00:00Z"


def _run(item: dict, tasks: list[dict] | None = None) -> Run:
    return Run(
        run_id=item["dag_run_id"],
        state=item["state"],
        run_type=item["run_type"],
        logical_date=item.get("logical_date"),
        run_after=item["run_after"],
        conf=item.get("conf") or {},
        start_date=item.get("start_date"),
        end_date=item.get("end_date"),
        tasks={t["task_id"]: t["state"] for t in tasks or []},
        task_starts={t["task_id"]: t.get("start_date") for t in tasks or []},
    )


# --- the processes ------------------------------------------------------------------------------


@contextmanager
def airflow_standalone(
    home: Path, env: dict[str, str], dag_id: str, timeout: float = 240
) -> Iterator[AirflowServices]:
    """Start standalone, wait until it serves and has parsed `dag_id`; stop everything after.

    On exit, `services.leftovers` lists the processes still alive after the stop (by pid, from
    the process tree and the unique AIRFLOW_HOME in their environment): callers assert it is
    empty, and `services.ports` are free again."""
    home.mkdir(parents=True, exist_ok=True)
    api_port = free_port()
    full_env = standalone_env(home, api_port, env)
    log_path = home / "standalone.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(AIRFLOW), "standalone"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal goes to pytest, not to it
        )
    services = AirflowServices(
        f"http://127.0.0.1:{api_port}", full_env, dag_id, log_path, process.pid
    )
    try:
        _wait_until_ready(services, process, timeout)
        yield services
    finally:
        services.leftovers = stop_all(process.pid, str(home))


def _wait_until_ready(services: AirflowServices, process: subprocess.Popen, timeout: float):
    def check(ready) -> bool:
        if process.poll() is not None:
            raise RuntimeError(
                f"airflow standalone exited ({process.returncode}):\n"
                + "\n".join(services.log_path.read_text().splitlines()[-40:])
            )
        try:
            return ready()
        except (OSError, ApiError):  # not serving yet, or the DAG not parsed yet
            return False

    def healthy() -> bool:
        health = services.request("GET", "/api/v2/monitor/health", auth=False)
        components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all(health[c]["status"] == "healthy" for c in components)

    def parsed() -> bool:
        errors = services.request("GET", "/api/v2/importErrors")["import_errors"]
        if errors:
            raise RuntimeError(f"the DAG files do not import: {errors}")
        return bool(services.request("GET", f"/api/v2/dags/{services.dag_id}"))

    try:
        wait_until(lambda: check(healthy), "Airflow standalone's components", timeout)
        wait_until(lambda: check(parsed), f"the DAG {services.dag_id} parsed", timeout)
    except TimeoutError as error:
        tail = "\n".join(services.log_path.read_text().splitlines()[-40:])
        raise TimeoutError(f"{error}; standalone's log ends:\n{tail}") from None


def _carrying(marker: str) -> list[psutil.Process]:
    """Processes whose AIRFLOW_HOME is ours: every process the services started carries it,
    even one orphaned when its parent died (the process tree no longer shows those)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("AIRFLOW_HOME") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_all(
    root_pid: int, home_marker: str, grace_s: float = 30, term_s: float = 10
) -> list[psutil.Process]:
    """Stop standalone the way Ctrl-C does (it terminates its components), then terminate, then
    kill, by pid, whatever of its tree is still alive. Returns the processes that survived."""
    try:
        root = psutil.Process(root_pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        root, tree = None, []
    tree += [p for p in _carrying(home_marker) if p not in tree]
    if root is not None:
        root.send_signal(signal.SIGINT)
        psutil.wait_procs([root], timeout=grace_s)
    for _ in range(2):  # the second round catches what a dying process started meanwhile
        alive = [p for p in tree + _carrying(home_marker) if p.is_running()]
        for proc in alive:
            with _gone_is_fine():
                proc.terminate()
        _, still = psutil.wait_procs(alive, timeout=term_s)
        for proc in still:
            with _gone_is_fine():
                proc.kill()
        psutil.wait_procs(still, timeout=5)
    if root is not None:
        with _gone_is_fine():
            root.wait(timeout=5)  # reap it: it is our child
    return [p for p in tree + _carrying(home_marker) if _alive(p)]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone_is_fine():
    return suppress(psutil.NoSuchProcess, psutil.TimeoutExpired)


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        # As a server binds: a closed connection's TIME_WAIT does not hold it, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
