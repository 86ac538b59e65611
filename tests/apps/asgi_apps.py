"""The ASGI apps of the ASGI tests: a FastAPI app and a plain Starlette app, each ``bare``
(no SDK) and ``wrapped`` (with it). The endpoints mirror ``tests/apps/flask_app.py``.

- ``fastapi_wrapped`` uses ``app.add_middleware(MetricsMiddleware, config=...)`` and an
  ``async def`` grouping function; ``starlette_wrapped`` is ``MetricsMiddleware(app, config)``
  around the whole app, with a plain grouping function.
- Settings come from the environment: ``README_METRICS_SERVER`` (read by the config),
  ``RM_BUFFER_LENGTH``, ``RM_FLUSH_INTERVAL``. ``RM_LIFESPAN_MARKER``: a file the app's
  lifespan appends ``startup`` and ``shutdown`` lines to.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.applications import Starlette
from starlette.routing import Route

from readme_metrics import MetricsApiConfig, MetricsMiddleware

BINARY = bytes(range(256)) * 64  # 16 KiB, every byte value, not UTF-8
BIG = json.dumps({"items": [{"i": i, "pad": "x" * 90} for i in range(10_000)]}).encode()  # ~1.1 MB
STREAM = [f"chunk {i}\n".encode() for i in range(5)]
SSE = [f'id: {i}\nevent: tick\ndata: {{"n": {i}}}\n\n'.encode() for i in range(5)]

COUNTER = {"calls": 0, "boom": 0}


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    marker = os.environ.get("RM_LIFESPAN_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write("startup\n")
    yield
    if marker:
        with open(marker, "a") as f:
            f.write("shutdown\n")


async def paced(chunks: list[bytes], pause: float) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(chunks):
        if i:
            await asyncio.sleep(pause)
        yield chunk


async def slow_chunks() -> AsyncIterator[bytes]:
    for _ in range(400):  # 400 × 64 KiB, 20 ms apart: 8 s if nobody hangs up
        yield b"x" * 65536
        await asyncio.sleep(0.02)


# -- shared handlers (Starlette style: request -> response) ----------------------------


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, status_code=201, media_type=request.headers.get("content-type", "application/octet-stream"))


async def binary(request: Request) -> Response:
    return Response(BINARY, media_type="application/octet-stream")


async def empty(request: Request) -> Response:
    return Response(status_code=204)


async def not_modified(request: Request) -> Response:
    return Response(status_code=304, headers={"ETag": '"abc"'})


async def big(request: Request) -> Response:
    return Response(BIG, media_type="application/json")


async def stream(request: Request) -> StreamingResponse:
    return StreamingResponse(paced(STREAM, 0.2), media_type="text/plain")


async def sse(request: Request) -> StreamingResponse:
    return StreamingResponse(paced(SSE, 0.2), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def slow(request: Request) -> StreamingResponse:
    return StreamingResponse(slow_chunks(), media_type="application/octet-stream")


async def boom(request: Request) -> Response:
    COUNTER["boom"] += 1
    raise RuntimeError("boom")


async def count(request: Request) -> JSONResponse:
    COUNTER["calls"] += 1
    return JSONResponse(COUNTER)


async def repeated_headers(request: Request) -> Response:
    response = Response("ok", media_type="text/plain")
    response.headers.append("X-Repeat", "one")
    response.headers.append("X-Repeat", "two")
    return response


async def form(request: Request) -> JSONResponse:
    async with request.form() as data:
        files = {}
        fields = {}
        for name, value in data.multi_items():
            if isinstance(value, str):
                fields[name] = value
            else:
                files[name] = len(await value.read())
    return JSONResponse({"form": fields, "files": files})


# -- FastAPI ---------------------------------------------------------------------------


def make_fastapi() -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.api_route("/json", methods=["GET", "HEAD"])
    async def json_endpoint() -> dict[str, Any]:
        return {"hello": "world", "n": 1}

    app.add_api_route("/form", form, methods=["POST"])
    app.add_api_route("/echo", echo, methods=["POST", "PUT", "PATCH", "DELETE"])
    for path, handler in [
        ("/binary", binary),
        ("/empty", empty),
        ("/not-modified", not_modified),
        ("/big", big),
        ("/stream", stream),
        ("/sse", sse),
        ("/slow", slow),
        ("/boom", boom),
        ("/count", count),
        ("/headers", repeated_headers),
    ]:
        app.add_api_route(path, handler, methods=["GET"])
    return app


# -- Starlette -------------------------------------------------------------------------


async def st_json(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world", "n": 1})


def make_starlette() -> Starlette:
    routes = [
        Route("/json", st_json),
        Route("/form", form, methods=["POST"]),
        Route("/echo", echo, methods=["POST", "PUT", "PATCH", "DELETE"]),
        Route("/binary", binary),
        Route("/empty", empty),
        Route("/not-modified", not_modified),
        Route("/big", big),
        Route("/stream", stream),
        Route("/sse", sse),
        Route("/slow", slow),
        Route("/boom", boom),
        Route("/count", count),
        Route("/headers", repeated_headers),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


# -- the SDK ---------------------------------------------------------------------------


def group(req: Any) -> Any:
    if req.headers.get("x-no-log"):
        return None
    if req.headers.get("x-group-boom"):
        raise ValueError("grouping failed")
    label = req.query_params.get("who", "Tester")
    return {"api_key": req.headers.get("x-api-key", "anon-key-0000"), "label": label, "email": "t@example.test"}


async def async_group(req: Any) -> Any:
    await asyncio.sleep(0)
    return group(req)


def make_config(grouping: Any) -> MetricsApiConfig:
    return MetricsApiConfig(
        "test-api-key",
        grouping,
        buffer_length=int(os.environ.get("RM_BUFFER_LENGTH", "1")),
        flush_interval=float(os.environ.get("RM_FLUSH_INTERVAL", "0.05")),
        max_body_bytes=int(os.environ.get("RM_MAX_BODY", str(2 * 1024 * 1024))),
    )


fastapi_bare = make_fastapi()
fastapi_wrapped = make_fastapi()
fastapi_wrapped.add_middleware(MetricsMiddleware, config=make_config(async_group))

starlette_bare = make_starlette()
starlette_wrapped = MetricsMiddleware(make_starlette(), make_config(group))
