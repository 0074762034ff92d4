"""A local HTTP stub of the Databricks Jobs API 2.2: what the provider's operators and hook call.

Requests are checked against the Databricks SDK's models of the API (the `JobsAPI` methods'
typed parameters, the `JobSettings` dataclasses): a field the API does not know (a typo, a field of
another endpoint) or a value of the wrong type is refused with HTTP 400 as the service would. A run
moves PENDING -> RUNNING -> TERMINATED, one state per poll; on its last step it plays its tasks in
order through the test's `play_task(task_key, parameters)`, which writes the task's outputs and
returns None, or returns an error message to fail the task (later tasks: UPSTREAM_FAILED).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from databricks.sdk.service.jobs import JobsAPI, JobSettings

from loopback_server import LoopbackServer

PlayTask = Callable[[str, list[str]], str | None]


class PayloadError(ValueError):
    pass


def check_job_settings(settings: dict[str, Any]) -> None:
    """The settings survive a round trip through the SDK's `JobSettings` model unchanged (an
    unknown or misspelled field does not), and each value has the type the model declares."""
    try:
        parsed = JobSettings.from_dict(settings).as_dict()
    except Exception as error:  # the SDK's own parse error: a wrong shape
        raise PayloadError(f"not a JobSettings: {error}") from None
    if parsed != settings:
        raise PayloadError(f"fields the Jobs API does not take: {diff(settings, parsed)}")
    check_types(settings, JobSettings)


def check_request(endpoint: Callable, body: dict[str, Any]) -> None:
    """A request body against the SDK method that sends it (`JobsAPI.run_now`, ...): each field
    is one of the method's parameters, of that parameter's type."""
    check_types(body, endpoint)


def check_types(body: dict[str, Any], model: Any) -> None:
    problems = [problem.removeprefix(".") for problem in type_problems(body, model, "")]
    if problems:
        raise PayloadError(f"values the Jobs API does not take: {problems}")


def type_problems(value: Any, hint: Any, path: str) -> list[str]:
    """Where `value` (parsed JSON) is not of type `hint`, the SDK's annotation of the field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]: absent fields are left out, never null
        (hint,) = [arg for arg in args if arg is not type(None)]
        return type_problems(value, hint, path)
    if origin is list:
        if not isinstance(value, list):
            return [f"{path} ({value!r} is not a list)"]
        return [
            p for i, item in enumerate(value) for p in type_problems(item, args[0], f"{path}[{i}]")
        ]
    if hint is typing.Any:
        return []
    if origin is dict or dataclasses.is_dataclass(hint) or inspect.isfunction(hint):
        return object_problems(value, hint, path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        ok = value in {member.value for member in hint}
    elif hint in (int, float):
        ok = is_number(value, hint)
    else:
        ok = isinstance(value, hint)
    return [] if ok else [f"{path} ({value!r} is not {getattr(hint, '__name__', hint)})"]


def is_number(value: Any, kind: type) -> bool:
    """A JSON number of that kind, or one in a string: the provider sends every number as a
    string ("Databricks can tolerate either numeric or string types", normalise_json_content)."""
    if isinstance(value, str):
        try:
            kind(value)  # int("sixty") and int("2.5") raise
        except ValueError:
            return False
        return True
    return isinstance(value, int if kind is int else (int, float)) and not isinstance(value, bool)


def object_problems(value: Any, hint: Any, path: str) -> list[str]:
    """A JSON object: a map (`Dict[str, X]`) or the fields of a model or of a method's body."""
    if not isinstance(value, dict):
        return [f"{path} ({value!r} is not an object)"]
    if typing.get_origin(hint) is dict:
        return [
            p
            for key, item in value.items()
            for p in type_problems(item, typing.get_args(hint)[1], f"{path}.{key}")
        ]
    fields = typing.get_type_hints(hint)
    fields.pop("return", None)
    return [
        problem
        for key, item in value.items()
        for problem in (
            type_problems(item, fields[key], f"{path}.{key}")
            if key in fields
            else [f"{path}.{key} (not a field)"]
        )
    ]


def diff(sent: Any, parsed: Any, path: str = "") -> list[str]:
    if isinstance(sent, dict) and isinstance(parsed, dict):
        return [
            problem
            for key in sent
            for problem in (
                diff(sent[key], parsed[key], f"{path}.{key}")
                if key in parsed
                else [f"{path}.{key}"]
            )
        ]
    if isinstance(sent, list) and isinstance(parsed, list) and len(sent) == len(parsed):
        return [
            p
            for i, (a, b) in enumerate(zip(sent, parsed, strict=True))
            for p in diff(a, b, f"{path}[{i}]")
        ]
    return [] if sent == parsed else [f"{path} ({sent!r} became {parsed!r})"]


@dataclass
class Run:
    run_id: int
    job_id: int
    tasks: list[dict[str, Any]]
    polls: int = 0
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    task_states: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)  # task run id -> error


class FakeDatabricks(LoopbackServer):
    def __init__(
        self,
        token: str,
        play_task: PlayTask,
        hold_running: bool = False,
        lost_run_now_replies: int = 0,
    ):
        self.token, self.play_task, self.hold_running = token, play_task, hold_running
        # run-now requests whose run starts but whose reply is lost (a 503 from a proxy)
        self.lost_run_now_replies = lost_run_now_replies
        self.run_now_tokens: list[str | None] = []  # the idempotency token of each run-now
        self.jobs: dict[int, dict[str, Any]] = {}
        self.runs: dict[int, Run] = {}
        self.tokens: dict[str, int] = {}  # idempotency token -> run id
        self.calls: list[tuple[str, str]] = []
        self.cancelled: list[int] = []
        self.lock = threading.Lock()
        super().__init__(self._handler())

    def connection_json(self) -> str:
        """An Airflow connection to this stub (token auth, plain HTTP on loopback)."""
        return json.dumps(
            {
                "conn_type": "databricks",
                "host": "127.0.0.1",
                "port": self.port,
                "schema": "http",
                "password": self.token,
            }
        )

    # --- the API ------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        self.calls.append((method, path))
        route = f"{method} {path.removeprefix('/api/2.2/jobs/')}"
        if route == "GET list":
            name = query.get("name")
            jobs = [
                {"job_id": job_id, "settings": settings}
                for job_id, settings in self.jobs.items()
                if name is None or settings["name"] == name
            ]
            return 200, {"jobs": jobs}
        if route == "POST create":
            check_job_settings(body)
            job_id = len(self.jobs) + 1
            self.jobs[job_id] = body
            return 200, {"job_id": job_id}
        if route == "POST reset":
            check_request(JobsAPI.reset, body)
            check_job_settings(body["new_settings"])
            self.jobs[int(body["job_id"])] = body["new_settings"]
            return 200, {}
        if route == "POST run-now":
            check_request(JobsAPI.run_now, body)
            self.run_now_tokens.append(body.get("idempotency_token"))
            started = self.run_now(int(body["job_id"]), body.get("idempotency_token"))
            if self.lost_run_now_replies:
                self.lost_run_now_replies -= 1
                return 503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "reply lost"}
            return 200, started
        if route == "GET runs/get":
            return 200, self.poll(self.runs[int(query["run_id"])])
        if route == "GET runs/get-output":
            task_run_id = int(query["run_id"])
            error = next(
                r.errors[task_run_id] for r in self.runs.values() if task_run_id in r.errors
            )
            return 200, {"error": error, "error_trace": f"Traceback ...\n{error}", "metadata": {}}
        if route == "POST runs/cancel":
            check_request(JobsAPI.cancel_run, body)
            run = self.runs[int(body["run_id"])]
            self.cancelled.append(run.run_id)
            run.life_cycle_state, run.result_state = "TERMINATED", "CANCELED"
            return 200, {}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": route}

    def run_now(self, job_id: int, token: str | None) -> dict:
        if token in self.tokens and self.runs[self.tokens[token]].result_state is None:
            return {"run_id": self.tokens[token]}  # an active run with this token: the same run
        run_id = 1000 + len(self.runs)
        self.runs[run_id] = Run(run_id, job_id, self.jobs[job_id]["tasks"])
        if token:
            self.tokens[token] = run_id
        return {"run_id": run_id}

    def poll(self, run: Run) -> dict:
        run.polls += 1
        if run.result_state is None:
            if run.polls == 2:
                run.life_cycle_state = "RUNNING"
            elif run.polls >= 3 and not self.hold_running:
                self.play(run)
        return {
            "run_id": run.run_id,
            "job_id": run.job_id,
            "run_page_url": f"{self.url}/#job/{run.job_id}/run/{run.run_id}",
            "state": {
                "life_cycle_state": run.life_cycle_state,
                "result_state": run.result_state or "",
                "state_message": run.state_message,
            },
            "tasks": [
                {
                    "run_id": run.run_id * 10 + i,
                    "task_key": t["task_key"],
                    "state": run.task_states.get(
                        t["task_key"], {"life_cycle_state": run.life_cycle_state}
                    ),
                }
                for i, t in enumerate(run.tasks)
            ],
        }

    def play(self, run: Run) -> None:
        failed = None
        for i, task in enumerate(run.tasks):
            key = task["task_key"]
            if failed:
                run.task_states[key] = {
                    "life_cycle_state": "TERMINATED",
                    "result_state": "UPSTREAM_FAILED",
                }
                continue
            error = self.play_task(key, task["spark_python_task"]["parameters"])
            result = "FAILED" if error else "SUCCESS"
            run.task_states[key] = {"life_cycle_state": "TERMINATED", "result_state": result}
            if error:
                failed, run.errors[run.run_id * 10 + i] = key, error
        run.life_cycle_state, run.result_state = "TERMINATED", "FAILED" if failed else "SUCCESS"
        run.state_message = f"Task {failed} failed" if failed else ""

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                if self.headers.get("Authorization") != f"Bearer {stub.token}":
                    return self._reply(401, {"error_code": "UNAUTHENTICATED"})
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if method == "GET" and body:  # the hook sends GET parameters in the query or body
                    query.update({k: str(v) for k, v in body.items()})
                try:
                    with stub.lock:
                        status, reply = stub.handle(method, url.path, query, body)
                except PayloadError as error:
                    status, reply = (
                        400,
                        {"error_code": "INVALID_PARAMETER_VALUE", "message": str(error)},
                    )
                self._reply(status, reply)

            def _reply(self, status: int, reply: dict) -> None:
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def log_message(self, *args) -> None:  # quiet
                pass

        return Handler
