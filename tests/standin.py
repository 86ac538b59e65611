"""A real local HTTP server standing in for the metrics API, with injectable faults.

It speaks ``POST /v1/request`` of the wire spec, keeps every batch it accepted, and can be
told to answer the next posts with given statuses, headers or delays.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b"fault"
    #: Seconds between the bytes of the answer (an API that drips its answer; 0: at once).
    drip: float = 0.0


@dataclass
class Post:
    at: float
    headers: dict[str, str]
    logs: list[dict[str, Any]] | None
    status: int


class MetricsStandIn:
    """``with MetricsStandIn() as api: ... api.url ... api.wait_for(...)``"""

    def __init__(self, api_key: str = "test-api-key", port: int = 0) -> None:
        self.api_key = api_key
        self.logs: list[dict[str, Any]] = []
        self.posts: list[Post] = []
        self.faults: list[Fault] = []
        #: What ``GET /v1`` answers as the project's ``baseUrl`` (None: 404, as if unknown).
        self.base_url: str | None = None
        self._cond = threading.Condition()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin._project(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                standin._handle(self, raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> MetricsStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._cond:
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None and fault.drip:
            self._drip(handler, fault)
            return
        if fault is not None:
            time.sleep(fault.delay)
            if fault.status < 300:
                fault = None  # a slow success
        status, logs = 200, None
        if fault is not None:
            status = fault.status
        elif handler.path != "/v1/request":
            status = 404
        elif headers.get("authorization") != "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode():
            status = 401
        else:
            try:
                body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
                logs = json.loads(body)
                if not isinstance(logs, list):
                    raise ValueError("not an array")
            except ValueError:
                status, logs = 400, None
        with self._cond:
            self.posts.append(Post(time.monotonic(), headers, logs, status))
            if logs is not None:
                self.logs.extend(logs)
            self._cond.notify_all()
        body = b"ok" if status < 300 else (fault.body if fault else b"rejected")
        handler.send_response(status)
        for name, value in (fault.headers if fault else {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _drip(self, handler: BaseHTTPRequestHandler, fault: Fault) -> None:
        """A 200 answer, one byte every ``fault.drip`` seconds; the batch is not kept."""
        with self._cond:
            self.posts.append(Post(time.monotonic(), {}, None, 200))
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        try:
            for byte in answer:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(fault.drip)
        except OSError:
            pass  # the client gave up

    def _project(self, handler: BaseHTTPRequestHandler) -> None:
        """``GET /v1``: the project's base URL (the x-documentation-url base)."""
        auth = "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()
        if handler.path.rstrip("/") != "/v1" or self.base_url is None:
            status, body = 404, b"{}"
        elif handler.headers.get("Authorization") != auth:
            status, body = 401, b"{}"
        else:
            status, body = 200, json.dumps({"baseUrl": self.base_url}).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    # -- assertions ------------------------------------------------------------------

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The logs matching ``predicate`` once at least ``count`` arrived (else AssertionError)."""
        with self._cond:
            if not self._cond.wait_for(lambda: sum(map(predicate, self.logs)) >= count, timeout):
                found = sum(map(predicate, self.logs))
                raise AssertionError(f"{found} of {count} expected logs arrived within {timeout}s")
            return [log for log in self.logs if predicate(log)]

    def matching(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self._cond:
            return [log for log in self.logs if predicate(log)]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` (for state no one signals, such as a client's counters) until it
    holds; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.02)


def entry(log: dict[str, Any]) -> dict[str, Any]:
    """The HAR entry of a log object."""
    entries: list[dict[str, Any]] = log["request"]["log"]["entries"]
    assert len(entries) == 1
    return entries[0]


def header_value(headers: list[dict[str, str]], name: str) -> str | None:
    for item in headers:
        if item["name"].lower() == name.lower():
            return item["value"]
    return None


def with_header(name: str, value: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate: the logged request carried header ``name: value``."""
    return lambda log: header_value(entry(log)["request"]["headers"], name) == value
