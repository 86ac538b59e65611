"""An example FastAPI API wrapped by readme_metrics.

    README_METRICS_SERVER=http://127.0.0.1:8787 uvicorn examples.fastapi.app:app --port 8000

``README_METRICS_SERVER`` points the SDK at a metrics endpoint (the local collector:
``readme-metrics serve``); without it, logs go to the hosted API with ``README_API_KEY``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from readme_metrics import MetricsApiConfig, MetricsMiddleware, Route
from readme_metrics.webhooks import VerificationError, verify

app = FastAPI()


@app.get("/hello")
async def hello(name: str = "world") -> dict[str, str]:
    return {"message": f"hello {name}"}


@app.post("/login")
async def login(request: Request) -> JSONResponse:
    body = await request.json()
    if body.get("password") != "correct horse battery staple":
        return JSONResponse({"error": "wrong password"}, status_code=401)
    return JSONResponse({"token": "t-" + str(body.get("user", ""))})


@app.get("/countdown")
async def countdown() -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        for n in range(3, 0, -1):
            yield f"{n}\n"
            await asyncio.sleep(0.1)
        yield "liftoff\n"

    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/fail")
async def fail() -> None:
    raise RuntimeError("this endpoint always fails")


WEBHOOK_SECRET = os.environ.get("README_WEBHOOK_SECRET", "local-webhook-secret")


@app.post("/webhook")
async def webhook(request: Request) -> JSONResponse:
    """ReadMe asks who a documentation reader is: answer only a call signed by ReadMe."""
    raw = await request.body()
    try:
        verify(raw, request.headers.get("readme-signature"), WEBHOOK_SECRET)
    except VerificationError as exc:
        return JSONResponse({"error": str(exc)}, status_code=401)
    email = json.loads(raw or b"{}").get("email", "")
    return JSONResponse({"email": email, "keys": [{"name": "default", "apiKey": f"demo-key-for-{email}"}]})


def identify(request: Any) -> dict[str, str] | None:
    """Who is calling: the ``X-Api-Key`` header (a Starlette ``Request``; None: don't log)."""
    key = request.headers.get("x-api-key")
    if key is None:
        return {"api_key": "anonymous-caller", "label": "Anonymous"}
    return {"api_key": key, "label": f"Customer {key[-4:]}", "email": f"{key[-4:]}@example.com"}


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, Any]:
    """Logged with ``_route: /items/{item_id}``: one endpoint in the dashboard, whatever the id."""
    return {"id": item_id, "name": f"item {item_id}"}


@app.post("/audit/orders")
@Route(max_body_bytes=16 * 1024 * 1024, denylist=["card"])  # a per-view policy: whole bodies
async def audit_orders(request: Request) -> dict[str, Any]:
    order = json.loads(await request.body() or b"{}")
    return {"accepted": True, "lines": len(order.get("lines", []))}


@app.get("/health")
@Route(log=False)  # never logged
async def health() -> dict[str, bool]:
    return {"ok": True}


def metadata(req: Any, response: Any) -> dict[str, Any]:
    """Stored with each log as ``_metadata`` (runs after the response; ``response`` has
    ``status`` and ``headers``)."""
    return {"tenant": req.headers.get("X-Tenant", "public"), "deployment": os.environ.get("DEPLOYMENT", "local")}


config = MetricsApiConfig(
    api_key=os.environ.get("README_API_KEY", "local-demo-key"),
    grouping_function=identify,
    denylist=["password", "token"],
    development_mode=True,
    metadata=metadata,
)
app.add_middleware(MetricsMiddleware, config=config)
