"""The Flask app of the benchmark, bare or wrapped by the SDK named in ``BENCH_SDK``.

``GET /ping`` (tiny JSON), ``POST /echo`` (the body echoed back), ``GET /call`` (one
outgoing ``httpx`` call to the sink), ``POST /audit`` (the same as ``/echo``, on a route
whose policy keeps whole bodies), ``GET /quiet`` (``/ping`` on a route never logged),
``GET /stream`` (five
chunks, 200 ms apart) and ``GET /big`` (a streamed 100 MB). Served by gunicorn:
``gunicorn -k gthread --threads 8 -w 1 flask_app:app``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from common import CALLED, SDK, STREAM_CHUNKS, STREAM_PAUSE, announce, big_chunks, moesif_settings, outgoing_client
from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/ping")
def ping() -> Any:
    return {"pong": True}


@app.post("/echo")
def echo() -> Response:
    return Response(request.get_data(), content_type="application/json")


@app.get("/call")
def call() -> Any:
    """One outgoing httpx call to a local service (the sink) per request: the case of
    outgoing capture (``--config outgoing='{"capture_outgoing": true}'``, see bench/run.py)."""
    return {"status": outgoing_client().get(CALLED).status_code}


@app.post("/audit")
def audit() -> Response:
    return Response(request.get_data(), content_type="application/json")


@app.get("/quiet")
def quiet() -> Any:
    return {"pong": True}


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[bytes]:
        for i in range(STREAM_CHUNKS):
            if i:
                time.sleep(STREAM_PAUSE)
            yield f"chunk {i}\n".encode()

    return Response(chunks(), content_type="text/plain")


@app.get("/big")
def big() -> Response:
    return Response(big_chunks(), content_type="application/octet-stream")


if SDK == "ours":
    from common import our_config

    from readme_metrics import MetricsMiddleware

    app.wsgi_app = MetricsMiddleware(app.wsgi_app, our_config())  # type: ignore[method-assign]
elif SDK == "readme340":
    from common import readme340_config

    from readme_metrics.flask_readme import ReadMeMetrics  # type: ignore[import-not-found]

    ReadMeMetrics(readme340_config(), app)
elif SDK == "moesif":
    from moesifwsgi import MoesifMiddleware  # type: ignore[import-not-found]

    app.wsgi_app = MoesifMiddleware(app.wsgi_app, moesif_settings())  # type: ignore[method-assign]
elif SDK != "none":
    raise SystemExit(f"unknown BENCH_SDK {SDK!r}")
announce()
