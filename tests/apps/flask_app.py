"""The Flask app of the WSGI tests: ``bare`` (no SDK) and ``wrapped`` (with it).

Settings come from the environment: ``README_METRICS_SERVER`` (read by the config itself)
and ``RM_BUFFER_LENGTH``. Paths under ``/raw/`` are plain WSGI, for what Flask hides
(``write()``, the ways of reading ``wsgi.input``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Flask, Response, jsonify, request

from readme_metrics import MetricsApiConfig, MetricsMiddleware

BINARY = bytes(range(256)) * 64  # 16 KiB, every byte value, not UTF-8
BIG = json.dumps({"items": [{"i": i, "pad": "x" * 90} for i in range(10_000)]}).encode()  # ~1.1 MB

flask_app = Flask(__name__)


@flask_app.get("/json")
def json_endpoint() -> Any:
    return jsonify(hello="world", n=1)


@flask_app.route("/echo", methods=["POST", "PUT", "PATCH", "DELETE"])
def echo() -> Response:
    return Response(request.get_data(), status=201, content_type=request.content_type or "application/octet-stream")


@flask_app.post("/form")
def form() -> Any:
    files = {name: len(f.read()) for name, f in request.files.items()}
    return jsonify(form=request.form.to_dict(), files=files)


@flask_app.get("/binary")
def binary() -> Response:
    return Response(BINARY, content_type="application/octet-stream")


@flask_app.get("/empty")
def empty() -> Response:
    return Response(status=204)


@flask_app.get("/not-modified")
def not_modified() -> Response:
    return Response(status=304, headers={"ETag": '"abc"'})


@flask_app.get("/big")
def big() -> Response:
    return Response(BIG, content_type="application/json")


@flask_app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[bytes]:
        for i in range(5):
            yield f"chunk {i}\n".encode()
            time.sleep(0.2)

    return Response(chunks(), content_type="text/plain")


@flask_app.get("/boom")
def boom() -> Response:
    raise RuntimeError("boom")


@flask_app.get("/headers")
def headers() -> Response:
    response = Response("ok", content_type="text/plain")
    response.headers.add("X-Repeat", "one")
    response.headers.add("X-Repeat", "two")
    return response


COUNTER: dict[str, int] = {"calls": 0}


@flask_app.get("/count")
def count() -> Any:
    COUNTER["calls"] += 1
    return jsonify(calls=COUNTER["calls"])


def raw(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Plain WSGI endpoints."""
    path = environ["PATH_INFO"]
    stream = environ["wsgi.input"]
    if path == "/raw/raise":
        COUNTER["raw_raise"] = COUNTER.get("raw_raise", 0) + 1
        raise RuntimeError("raised by the app")
    if path == "/raw/no-length":  # a one-item list and no Content-Length: servers frame it by len()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"framed by len()"]
    if path == "/raw/count":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(COUNTER).encode()]
    if path == "/raw/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and returned"]
    if path == "/raw/readline":
        lines = []
        while True:
            line = stream.readline()
            if not line:
                break
            lines.append(line)
        body = b"".join(lines)
    elif path == "/raw/iter":
        body = b"".join(stream)
    elif path == "/raw/read-n":
        parts = []
        while True:
            part = stream.read(7)
            if not part:
                break
            parts.append(part)
        body = b"".join(parts)
    elif path == "/raw/ignore":
        body = b"ignored"
    elif path == "/raw/slow":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * 65536 for _ in range(2000))
    elif path == "/raw/fail-midway":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen() -> Iterator[bytes]:
            yield b"first part"
            raise RuntimeError("midway")

        return gen()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such raw endpoint"]
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


def dispatch(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ["PATH_INFO"].startswith("/raw/"):
        return raw(environ, start_response)
    return flask_app.wsgi_app(environ, start_response)


def group(req: Any) -> Any:
    if req.headers.get("X-No-Log"):
        return None
    if req.headers.get("X-Group-Boom"):
        raise ValueError("grouping failed")
    return {"api_key": req.headers.get("X-Api-Key", "anon-key-0000"), "label": "Tester", "email": "t@example.test"}


config = MetricsApiConfig(
    "test-api-key",
    group,
    buffer_length=int(os.environ.get("RM_BUFFER_LENGTH", "1")),
    flush_interval=float(os.environ.get("RM_FLUSH_INTERVAL", "0.05")),
    max_body_bytes=int(os.environ.get("RM_MAX_BODY", str(2 * 1024 * 1024))),
)

bare = dispatch
wrapped = MetricsMiddleware(dispatch, config)
