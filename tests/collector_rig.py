"""Shared by the collector tests: wire log objects, a real collector subprocess, HTTP calls."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.servers import Server, free_port


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_log(
    *,
    log_id: str | None = None,
    method: str = "GET",
    url: str = "http://api.test/items",
    status: int = 200,
    duration_ms: float = 12.5,
    started: float | None = None,
    group_id: str = "sha512-abc?0001",
    label: str = "Acme",
    request_body: str | None = None,
    response_body: str = '{"ok":true}',
    request_headers: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A log object as the SDK sends it (docs/protocol.md)."""
    entry: dict[str, Any] = {
        "pageref": url,
        "startedDateTime": iso(time.time() - 60 if started is None else started),
        "time": duration_ms,
        "request": {
            "method": method,
            "url": url,
            "httpVersion": "HTTP/1.1",
            "headers": request_headers or [{"name": "Accept", "value": "application/json"}],
            "queryString": [],
            "cookies": [],
            "headersSize": -1,
            "bodySize": len(request_body.encode()) if request_body else 0,
        },
        "response": {
            "status": status,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "cookies": [],
            "content": {"size": len(response_body.encode()), "mimeType": "application/json", "text": response_body},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": len(response_body.encode()),
        },
        "cache": {},
        "timings": {"send": 0, "wait": duration_ms, "receive": 0},
    }
    if request_body is not None:
        entry["request"]["postData"] = {"mimeType": "application/json", "text": request_body}
    return {
        "_id": log_id or str(uuid.uuid4()),
        "_version": 3,
        "group": {"id": group_id, "label": label, "email": f"{label.lower()}@example.test"},
        "clientIPAddress": "127.0.0.1",
        "development": False,
        "request": {
            "log": {"version": "1.2", "creator": {"name": "test", "version": "0"}, "entries": [entry]},
        },
    }


def auth(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post(
    base: str,
    body: Any,
    *,
    key: str | None = "test-api-key",
    compress: bool = False,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST /v1/request over real HTTP; (status, decoded JSON answer)."""
    data = raw if raw is not None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if compress:
        data = gzip.compress(data)
        all_headers["Content-Encoding"] = "gzip"
    if key is not None:
        all_headers["Authorization"] = auth(key)
    return request(base + "/v1/request", data=data, headers=all_headers)


def request(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, {"raw": payload.decode(errors="replace")}


def get_json(base: str, path: str) -> Any:
    status, body = request(base + path)
    assert status == 200, (status, body)
    return body


def collector(db: Path | str, *args: str) -> Server:
    """``python -m readme_metrics serve`` as a subprocess on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", "readme_metrics", "serve", "--port", str(port), "--db", str(db), *args]
    return Server(argv, port)


def wait_count(base: str, count: int, timeout: float = 20.0, query: str = "") -> dict[str, Any]:
    """The /api/logs answer once at least ``count`` logs match (else AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = get_json(base, f"/api/logs?limit=1000&{query}")
        if body["total"] >= count:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{body['total']} of {count} logs arrived within {timeout}s")
        time.sleep(0.1)


def send_raw(port: int, data: bytes, *, host: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
    """Send ``data`` as is and read until the server closes; the write side stays open.

    (A server still waiting for body bytes would keep the connection: ``TimeoutError``.)
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)
