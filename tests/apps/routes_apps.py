"""Apps of the route-policy tests (``tests/test_routes.py``): the same routes and the same
configuration in Flask (the ``ReadMeMetrics`` extension), FastAPI and Django
(``tests.apps.routes_django``).

Routes (the ``routes=`` patterns of :func:`config`, and per-view ``@Route`` policies):

- ``POST /audit/echo``: whole bodies (``max_body_bytes`` 16 MiB, the default being 1 MiB).
- ``GET /quiet/x``: ``log=False`` by pattern; ``GET /view-quiet``: ``log=False`` on the view.
- ``POST /view-nobody``: ``@Route(log_body=False)`` on the view.
- ``GET /items/<int:item_id>``: a template; ``_route`` is ``/items/{item_id}``.
- ``/sampled/ok|fail|slow|raise``: ``sample_rate=0``: only a 5xx, an exception, a slow one.
- ``GET /half/n``: ``sample_rate=0.5``: the logs carry ``_weight`` 2.
- ``POST /secret/<name>``: ``denylist=["card"]`` added to the app-wide ``["password"]``.
- ``GET /teapot``: 418, left out by the response-aware ``skip(request, response)``.
- ``GET /view-half/n``: ``@Route(sample_rate=0.5)`` on the view (no app-wide sampling).
- ``GET /view-big``: ``@Route(max_body_bytes=16 MiB)`` on the view, a 2 MiB answer to a GET
  (the request has no body: the view's policy must reach the response body).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, request

from readme_metrics import Route
from readme_metrics.flask_readme import ReadMeMetrics
from tests.apps.routes_config import AUDIT, BIG, RAISED, SLOW_MS, config

# -- Flask -------------------------------------------------------------------------------

flask_app = Flask(__name__)


@flask_app.get("/ping")
def f_ping() -> str:
    return "pong"


@flask_app.post("/audit/echo")
def f_audit() -> Response:
    return Response(request.get_data(), content_type="application/json")


@flask_app.get("/quiet/x")
def f_quiet() -> str:
    return "quiet"


@flask_app.get("/view-quiet")
@Route(log=False)
def f_view_quiet() -> str:
    return "quiet"


@flask_app.post("/view-nobody")
@Route(log_body=False)
def f_view_nobody() -> Response:
    return Response(request.get_data(), content_type="application/json")


@flask_app.get("/items/<int:item_id>")
def f_item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@flask_app.get("/sampled/<what>")
def f_sampled(what: str) -> Any:
    if what == "raise":
        raise ValueError(RAISED)
    if what == "slow":
        time.sleep(SLOW_MS / 1000 + 0.1)
    return Response("x", status=503 if what == "fail" else 200)


@flask_app.get("/half/<int:n>")
def f_half(n: int) -> str:
    return str(n)


@flask_app.post("/secret/<name>")
def f_secret(name: str) -> Response:
    return Response(request.get_data(), content_type="application/json")


@flask_app.get("/teapot")
def f_teapot() -> Response:
    return Response("short and stout", status=418)


@flask_app.get("/view-half/<int:n>")
@Route(sample_rate=0.5)
def f_view_half(n: int) -> str:
    return str(n)


@flask_app.get("/view-big")
@Route(max_body_bytes=AUDIT)
def f_view_big() -> Response:
    return Response(BIG, content_type="application/octet-stream")


ReadMeMetrics(config(), flask_app)

#: The same route with the plain WSGI middleware (``app.wsgi_app = MetricsMiddleware(...)``),
#: the way most Flask apps are wrapped: ``_route`` is read while Flask's request is alive.
flask_plain = Flask("flask_plain")
flask_plain.get("/items/<int:item_id>")(f_item)


# -- FastAPI -----------------------------------------------------------------------------

from fastapi import FastAPI  # noqa: E402
from fastapi import Request as FRequest  # noqa: E402
from fastapi import Response as FResponse  # noqa: E402

from readme_metrics import MetricsMiddleware  # noqa: E402

flask_plain.wsgi_app = MetricsMiddleware(flask_plain.wsgi_app, config())  # type: ignore[method-assign]

fastapi_app = FastAPI()


@fastapi_app.get("/ping")
async def a_ping() -> FResponse:
    return FResponse("pong")


@fastapi_app.post("/audit/echo")
async def a_audit(req: FRequest) -> FResponse:
    return FResponse(await req.body(), media_type="application/json")


@fastapi_app.get("/quiet/x")
async def a_quiet() -> FResponse:
    return FResponse("quiet")


@fastapi_app.get("/view-quiet")
@Route(log=False)
async def a_view_quiet() -> FResponse:
    return FResponse("quiet")


@fastapi_app.post("/view-nobody")
@Route(log_body=False)
async def a_view_nobody(req: FRequest) -> FResponse:
    return FResponse(await req.body(), media_type="application/json")


@fastapi_app.get("/items/{item_id}")
async def a_item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@fastapi_app.get("/sampled/{what}")
def a_sampled(what: str) -> FResponse:
    if what == "raise":
        raise ValueError(RAISED)
    if what == "slow":
        time.sleep(SLOW_MS / 1000 + 0.1)
    return FResponse("x", status_code=503 if what == "fail" else 200)


@fastapi_app.get("/half/{n}")
async def a_half(n: int) -> FResponse:
    return FResponse(str(n))


@fastapi_app.post("/secret/{name}")
async def a_secret(name: str, req: FRequest) -> FResponse:
    return FResponse(await req.body(), media_type="application/json")


@fastapi_app.get("/teapot")
async def a_teapot() -> FResponse:
    return FResponse("short and stout", status_code=418)


@fastapi_app.get("/view-half/{n}")
@Route(sample_rate=0.5)
async def a_view_half(n: int) -> FResponse:
    return FResponse(str(n))


@fastapi_app.get("/view-big")
@Route(max_body_bytes=AUDIT)
async def a_view_big() -> FResponse:
    return FResponse(BIG, media_type="application/octet-stream")


fastapi_app.add_middleware(MetricsMiddleware, config=config())
