"""Apps of the redaction end-to-end tests: the same endpoints as a WSGI app (Flask, under
gunicorn) and an ASGI app (Starlette, under uvicorn), each wrapped with a denylist.

Settings from the environment: ``README_METRICS_SERVER`` (read by the config itself),
``RM_DENYLIST`` (comma-separated keys), ``RM_LOG_BODY`` (``0`` for metadata only).
Paths under ``/health`` are excluded from logging.

Endpoints: ``/echo`` answers the request body with its content type (so response-side
redaction is exercised with the same secrets); ``/secrets`` answers secrets in a nested
JSON body, a response header and a ``Set-Cookie``; ``/gzip`` answers a gzip-encoded JSON
body with a secret in it; ``/health`` answers ``ok``. Secrets the server itself makes are
:data:`RESPONSE_SECRETS`.
"""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

from flask import Flask, Response, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from readme_metrics import MetricsApiConfig, MetricsMiddleware

RESPONSE_SECRETS = {
    "json": "resp-json-secret-6b1f2e",
    "header": "resp-header-secret-90ad1c",
    "cookie": "resp-cookie-secret-77e3a0",
    "gzip": "resp-gzip-secret-c4d2f8",
}
SECRETS_BODY = json.dumps(
    {"ok": True, "data": [{"id": 1, "Password": RESPONSE_SECRETS["json"], "public": "visible-value"}]}
).encode()
GZIP_BODY = gzip.compress(json.dumps({"token": RESPONSE_SECRETS["gzip"], "public": "gzip-visible"}).encode())
SECRET_HEADERS = [
    ("X-Api-Token", RESPONSE_SECRETS["header"]),
    ("Set-Cookie", f"sid={RESPONSE_SECRETS['cookie']}; Path=/; HttpOnly"),
]


def group(_request: Any) -> dict[str, str]:
    return {"api_key": "caller-key-1234", "label": "Redaction tester"}


def make_config() -> MetricsApiConfig:
    return MetricsApiConfig(
        "test-api-key",
        group,
        denylist=[k for k in os.environ.get("RM_DENYLIST", "").split(",") if k],
        exclude_paths=["/health*"],
        log_body=os.environ.get("RM_LOG_BODY", "1") != "0",
        flush_interval=0.05,
    )


# -- WSGI (Flask) ----------------------------------------------------------------------

flask_app = Flask(__name__)


@flask_app.route("/echo", methods=["POST", "OPTIONS"])
def flask_echo() -> Response:
    if request.method == "OPTIONS":
        return Response(status=204)
    return Response(request.get_data(), content_type=request.content_type or "application/octet-stream")


@flask_app.get("/secrets")
def flask_secrets() -> Response:
    response = Response(SECRETS_BODY, content_type="application/json")
    for name, value in SECRET_HEADERS:
        response.headers.add(name, value)
    return response


@flask_app.get("/gzip")
def flask_gzip() -> Response:
    return Response(GZIP_BODY, content_type="application/json", headers={"Content-Encoding": "gzip"})


@flask_app.get("/health")
def flask_health() -> Response:
    return Response("ok", content_type="text/plain")


wsgi_wrapped = MetricsMiddleware(flask_app.wsgi_app, make_config())


# -- ASGI (Starlette) ------------------------------------------------------------------


async def echo(req: Request) -> StarletteResponse:
    if req.method == "OPTIONS":
        return StarletteResponse(status_code=204)
    body = await req.body()
    return StarletteResponse(body, media_type=req.headers.get("content-type", "application/octet-stream"))


async def secrets(_req: Request) -> StarletteResponse:
    response = StarletteResponse(SECRETS_BODY, media_type="application/json")
    for name, value in SECRET_HEADERS:
        response.headers.append(name, value)
    return response


async def gzipped(_req: Request) -> StarletteResponse:
    return StarletteResponse(GZIP_BODY, media_type="application/json", headers={"Content-Encoding": "gzip"})


async def health(_req: Request) -> StarletteResponse:
    return StarletteResponse("ok", media_type="text/plain")


starlette_app = Starlette(
    routes=[
        Route("/echo", echo, methods=["POST", "OPTIONS"]),
        Route("/secrets", secrets),
        Route("/gzip", gzipped),
        Route("/health", health),
    ]
)

asgi_wrapped = MetricsMiddleware(starlette_app, make_config())
