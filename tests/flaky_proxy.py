"""An HTTP proxy in front of the moto server that answers chosen requests with AWS's transient
errors, as AWS does under load: S3's `503 SlowDown`, the JSON APIs' `ThrottlingException` (EMR).
The client sees a real error response over the wire. It also records the region each request
was signed for."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from loopback_server import LoopbackServer

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
THROTTLED = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
INTERNAL_ERROR = b'{"__type": "InternalServerError", "message": "We encountered an internal error"}'
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length"}


class FlakyProxy(LoopbackServer):
    def __init__(self, upstream_url: str):
        upstream = urlsplit(upstream_url)
        self.upstream = (upstream.hostname, upstream.port)
        self.faults: list[list] = []  # [method, path prefix, how many more to fail]
        self.throttles: list[list] = []  # [X-Amz-Target, how many more, armed after this target]
        self.injected: list[tuple[str, str]] = []
        self.passed_targets: set[str] = set()
        self.responses_to_lose: dict[str, int] = {}  # X-Amz-Target -> how many more
        self.signing_regions: list[str] = []
        self.lock = threading.Lock()
        super().__init__(self._handler())

    def fail(self, method: str, path_prefix: str, times: int) -> None:
        """The next `times` requests `method path_prefix...` get 503 SlowDown."""
        self.faults.append([method, path_prefix, times])

    def throttle(self, target: str, times: int, after: str | None = None) -> None:
        """The next `times` calls of the JSON API operation `target` (`ElasticMapReduce.
        DescribeStep`) get 400 ThrottlingException; with `after`, only once `after` went through."""
        self.throttles.append([target, times, after])

    def take_throttle(self, target: str) -> bool:
        with self.lock:
            for throttle in self.throttles:
                armed = throttle[2] is None or throttle[2] in self.passed_targets
                if throttle[0] == target and throttle[1] > 0 and armed:
                    throttle[1] -= 1
                    self.injected.append(("POST", target))
                    return True
        return False

    def lose_response(self, target: str, times: int = 1) -> None:
        """The next `times` calls of `target` reach moto, but the client gets a 500 instead of
        the answer: the call happened, the client does not know it."""
        self.responses_to_lose[target] = times

    def take_lost_response(self, target: str) -> bool:
        with self.lock:
            if self.responses_to_lose.get(target, 0) > 0:
                self.responses_to_lose[target] -= 1
                self.injected.append(("POST", target))
                return True
        return False

    def take_fault(self, method: str, path: str) -> bool:
        with self.lock:
            for fault in self.faults:
                if fault[0] == method and path.startswith(fault[1]) and fault[2] > 0:
                    fault[2] -= 1
                    self.injected.append((method, path))
                    return True
        return False

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as boto3 expects

            def _read_body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _relay(self) -> None:
                body = self._read_body()
                scope = self.headers.get("Authorization", "").partition("Credential=")[2]
                proxy.signing_regions.append(scope.split("/")[2] if scope.count("/") >= 4 else "")
                target = self.headers.get("X-Amz-Target", "")
                if proxy.take_fault(self.command, urlsplit(self.path).path):
                    return self._reply(503, [("Content-Type", "application/xml")], SLOW_DOWN)
                if target and proxy.take_throttle(target):
                    json_type = [("Content-Type", "application/x-amz-json-1.1")]
                    return self._reply(400, json_type, THROTTLED)
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                if target and response.status < 300:
                    proxy.passed_targets.add(target)
                    if proxy.take_lost_response(target):
                        json_type = [("Content-Type", "application/x-amz-json-1.1")]
                        return self._reply(500, json_type, INTERNAL_ERROR)
                kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                self._reply(response.status, kept, data)

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        return Handler
