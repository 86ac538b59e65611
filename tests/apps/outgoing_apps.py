"""Apps that call other services while serving (outgoing capture, ``tests/test_outgoing.py``).

Both apps forward the incoming ``X-Req-Id`` on every call they make, so a test finds the
incoming log and the logs of its calls by that one id. Environment: ``README_METRICS_SERVER``
(the stand-in), ``RM_TARGET`` (the local service called), ``RM_OUTGOING_HOSTS``
(comma-separated, optional).

- Flask (``flask_app``, under gunicorn), calling with ``requests``: ``/call`` (a JSON post
  with secrets), ``/stream`` (reads the first 8 KiB of a long download, then closes it),
  ``/fail`` (a call to a closed port; answers the exception's type), ``/thread`` (two calls
  from threads: one started with the request's context copied, one without), ``/ping``.
- FastAPI (``fastapi_app``, under uvicorn), calling with ``httpx.AsyncClient``: ``/call``,
  ``/stream``, ``/fail``, ``/task`` (a call from an ``asyncio`` task), ``/ping``.

Both also serve ``/call`` under the paths of the route policies of :func:`config` (the calls
share their request's fate): ``/quiet/call`` (``log=False``), ``/excluded/call``
(``exclude_paths``), ``/sampled/call`` (``sample_rate=0``; ``?status=503`` answers 503, so
the request is logged for its outcome), ``/half/call`` (``sample_rate=0.5``),
``/deny/call`` (``denylist=["kept"]``), ``/nobody/call`` (``log_body=False``), and
``/many/call?n=70`` makes that many calls; FastAPI has ``/view-quiet/call``
(``@Route(log=False)`` on the endpoint).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from typing import Any

import httpx
import requests
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from flask import Flask
from flask import request as flask_request

from readme_metrics import MetricsApiConfig, MetricsMiddleware, Route
from tests.integration import group

TARGET = os.environ.get("RM_TARGET", "http://127.0.0.1:9")
CLOSED = os.environ.get("RM_CLOSED", "http://127.0.0.1:9")
SECRETS = {"password": "hunter2", "token": "tok-123", "kept": "visible"}


def skip_outgoing(request: Any) -> bool:
    """Leave out calls marked ``X-Skip-Me`` (requests' and httpx's request objects alike)."""
    if request.headers.get("X-Hook-Raises"):
        raise RuntimeError("hook failed")
    return bool(request.headers.get("X-Skip-Me"))


def config() -> MetricsApiConfig:
    hosts = [h for h in os.environ.get("RM_OUTGOING_HOSTS", "").split(",") if h] or None
    return MetricsApiConfig(
        "test-api-key",
        group,
        denylist=["password", "token"],
        max_body_bytes=4096,
        flush_interval=0.05,
        capture_outgoing=True,
        skip_outgoing=skip_outgoing,
        outgoing_hosts=hosts,
        exclude_paths=["/excluded/*"],
        routes={
            "/quiet/*": Route(log=False),
            "/sampled/*": Route(sample_rate=0.0),
            "/half/*": Route(sample_rate=0.5),
            "/deny/*": Route(denylist=["kept"]),
            "/nobody/*": Route(log_body=False),
        },
    )


#: The paths that answer as ``/call`` does (see the module docstring).
CALL_PATHS = ["/call", "/quiet/call", "/excluded/call", "/sampled/call", "/half/call", "/deny/call", "/nobody/call"]


# -- Flask + requests ------------------------------------------------------------------

flask_app = Flask(__name__)


def _forward() -> dict[str, str]:
    return {"X-Req-Id": flask_request.headers.get("X-Req-Id", ""), **_marks(flask_request.headers)}


def _marks(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in ("X-Skip-Me", "X-Hook-Raises") if headers.get(name)}


def flask_call() -> Any:
    answer = requests.post(f"{TARGET}/echo?token=tok-q", json=SECRETS, headers=_forward(), timeout=10)
    return answer.text, int(flask_request.args.get("status", 200))


for _path in CALL_PATHS:
    flask_app.add_url_rule(_path, _path, flask_call, methods=["GET", "POST"])


@flask_app.route("/many/call")
def flask_many() -> Any:
    with requests.Session() as session:
        for i in range(int(flask_request.args.get("n", 1))):
            session.get(f"{TARGET}/echo?i={i}", headers=_forward(), timeout=10)
    return "ok"


@flask_app.route("/stream")
def flask_stream() -> Any:
    with requests.get(f"{TARGET}/long", stream=True, headers=_forward(), timeout=10) as answer:
        first = next(answer.iter_content(8192))
    return str(len(first))


@flask_app.route("/fail")
def flask_fail() -> Any:
    try:
        requests.get(f"{CLOSED}/nothing", headers=_forward(), timeout=10)
    except requests.RequestException as exc:
        return type(exc).__name__
    return "no error"


@flask_app.route("/thread")
def flask_thread() -> Any:
    headers = _forward()

    def call(which: str) -> None:
        requests.get(f"{TARGET}/echo?thread={which}", headers=headers, timeout=10)

    copied = threading.Thread(target=contextvars.copy_context().run, args=(call, "copied"))
    bare = threading.Thread(target=call, args=("bare",))
    for thread in (copied, bare):
        thread.start()
        thread.join()
    return "ok"


@flask_app.route("/ping")
def flask_ping() -> Any:
    return "pong"


flask_app.wsgi_app = MetricsMiddleware(flask_app.wsgi_app, config())  # type: ignore[method-assign]


# -- FastAPI + httpx.AsyncClient -------------------------------------------------------

fastapi_app = FastAPI()


def _aforward(request: Request) -> dict[str, str]:
    return {"X-Req-Id": request.headers.get("x-req-id", ""), **_marks(request.headers)}


@fastapi_app.api_route("/call", methods=["GET", "POST"])
async def fastapi_call(request: Request) -> Any:
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{TARGET}/echo?token=tok-q", json=SECRETS, headers=_aforward(request))
    return PlainTextResponse(answer.text, status_code=int(request.query_params.get("status", 200)))


for _path in CALL_PATHS[1:]:
    fastapi_app.add_api_route(_path, fastapi_call, methods=["GET", "POST"])


@fastapi_app.api_route("/view-quiet/call", methods=["GET", "POST"])
@Route(log=False)
async def fastapi_view_quiet(request: Request) -> Any:
    return await fastapi_call(request)


@fastapi_app.get("/many/call")
async def fastapi_many(request: Request) -> Any:
    async with httpx.AsyncClient() as client:
        for i in range(int(request.query_params.get("n", 1))):
            await client.get(f"{TARGET}/echo?i={i}", headers=_aforward(request))
    return PlainTextResponse("ok")


@fastapi_app.get("/stream")
async def fastapi_stream(request: Request) -> Any:
    async with httpx.AsyncClient() as client, client.stream("GET", f"{TARGET}/long", headers=_aforward(request)) as r:
        async for chunk in r.aiter_raw():
            return PlainTextResponse(str(len(chunk)))
    return PlainTextResponse("0")


@fastapi_app.get("/fail")
async def fastapi_fail(request: Request) -> Any:
    try:
        async with httpx.AsyncClient() as client:
            await client.get(f"{CLOSED}/nothing", headers=_aforward(request))
    except httpx.HTTPError as exc:
        return PlainTextResponse(type(exc).__name__)
    return PlainTextResponse("no error")


@fastapi_app.get("/task")
async def fastapi_task(request: Request) -> Any:
    headers = _aforward(request)

    async def call() -> None:
        async with httpx.AsyncClient() as client:
            await client.get(f"{TARGET}/echo?from=task", headers=headers)

    await asyncio.create_task(call())
    return PlainTextResponse("ok")


@fastapi_app.get("/ping")
async def fastapi_ping() -> Any:
    return PlainTextResponse("pong")


fastapi_app.add_middleware(MetricsMiddleware, config=config())
