"""The FastAPI app of the benchmark, bare or wrapped by the SDK named in ``BENCH_SDK``.

The same endpoints as ``flask_app``. Served by uvicorn, one worker:
``uvicorn fastapi_app:app``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from common import CALLED, SDK, STREAM_CHUNKS, STREAM_PAUSE, announce, big_chunks, moesif_settings, outgoing_client
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

app = FastAPI()


@app.get("/ping")
async def ping() -> Any:
    return {"pong": True}


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


@app.get("/call")
async def call() -> Any:
    """One outgoing httpx call to a local service (the sink) per request (see flask_app)."""
    return {"status": (await outgoing_client(asynchronous=True).get(CALLED)).status_code}


@app.post("/audit")
async def audit(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


@app.get("/quiet")
async def quiet() -> Any:
    return {"pong": True}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(STREAM_CHUNKS):
            if i:
                await asyncio.sleep(STREAM_PAUSE)
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/big")
async def big() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in big_chunks():
            yield chunk

    return StreamingResponse(chunks(), media_type="application/octet-stream")


if SDK == "ours":
    from common import our_config

    from readme_metrics import MetricsMiddleware

    app.add_middleware(MetricsMiddleware, config=our_config())
elif SDK == "readme340":
    from common import readme340_config

    from readme_metrics.fastapi import ReadMeMetricsMiddleware

    app.add_middleware(ReadMeMetricsMiddleware, config=readme340_config())
elif SDK == "moesif":
    from moesifasgi import MoesifMiddleware  # type: ignore[import-not-found]

    app.add_middleware(MoesifMiddleware, settings=moesif_settings())
elif SDK != "none":
    raise SystemExit(f"unknown BENCH_SDK {SDK!r}")
announce()
