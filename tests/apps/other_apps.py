"""More frameworks for the integration tests, each wrapped with ``MetricsMiddleware``.

- ``falcon_app``: Falcon (WSGI); no ``base_log_url``: the link base is fetched from the
  metrics server's ``GET /v1`` in the background.
- ``bottle_app``: Bottle (WSGI) with ``documentation_header=False``.
- ``quart_app``: Quart (ASGI), ``app.asgi_app`` wrapped.
- ``litestar_app``: Litestar (ASGI), the whole app wrapped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import bottle
import falcon
import litestar
import quart
from litestar.response import Stream

from readme_metrics import MetricsApiConfig, MetricsMiddleware
from tests.integration import group


def _config(**kwargs: Any) -> MetricsApiConfig:
    return MetricsApiConfig("test-api-key", group, flush_interval=0.05, **kwargs)


# -- Falcon (WSGI) ----------------------------------------------------------------------


class _Ping:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain"
        resp.text = "pong"


class _Echo:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = req.content_type or "application/octet-stream"
        resp.data = req.bounded_stream.read()

    on_put = on_post


class _Stream:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain"
        resp.stream = iter([f"falcon {i}\n".encode() for i in range(5)])


_falcon = falcon.App()
_falcon.add_route("/ping", _Ping())
_falcon.add_route("/echo", _Echo())
_falcon.add_route("/stream", _Stream())
falcon_bare = _falcon
falcon_app = MetricsMiddleware(_falcon, _config())


# -- Bottle (WSGI) ----------------------------------------------------------------------

_bottle = bottle.Bottle()


@_bottle.get("/ping")
def _bottle_ping() -> str:
    return "pong"


@_bottle.post("/echo")
def _bottle_echo() -> bytes:
    bottle.response.content_type = bottle.request.content_type or "application/octet-stream"
    return bytes(bottle.request.body.read())


@_bottle.get("/stream")
def _bottle_stream() -> Iterator[bytes]:
    bottle.response.content_type = "text/plain"
    return (f"bottle {i}\n".encode() for i in range(5))


bottle_bare = _bottle
bottle_app = MetricsMiddleware(_bottle, _config(documentation_header=False))


# -- Quart (ASGI) -----------------------------------------------------------------------


def _make_quart() -> quart.Quart:
    app = quart.Quart(__name__)

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    @app.route("/echo", methods=["POST", "PATCH"])
    async def echo() -> quart.Response:
        data = await quart.request.get_data()
        return quart.Response(data, content_type=quart.request.content_type or "application/octet-stream")

    @app.get("/stream")
    async def stream() -> quart.Response:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"quart {i}\n".encode()

        return quart.Response(chunks(), content_type="text/plain")

    return app


quart_bare = _make_quart()
quart_app = _make_quart()
quart_app.asgi_app = MetricsMiddleware(  # type: ignore[method-assign]
    quart_app.asgi_app, _config(base_log_url="https://docs.example.test")
)


# -- Litestar (ASGI) --------------------------------------------------------------------


@litestar.get("/ping", media_type="text/plain")
async def _ls_ping() -> str:
    return "pong"


@litestar.post("/echo", status_code=200)
async def _ls_echo(request: litestar.Request[Any, Any, Any]) -> litestar.Response[bytes]:
    data = await request.body()
    return litestar.Response(data, media_type=request.headers.get("content-type", "application/octet-stream"))


@litestar.get("/stream")
async def _ls_stream() -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield json.dumps({"i": i}).encode() + b"\n"

    return Stream(chunks(), media_type="application/x-ndjson")


litestar_bare = litestar.Litestar([_ls_ping, _ls_echo, _ls_stream])
litestar_app = MetricsMiddleware(
    litestar.Litestar([_ls_ping, _ls_echo, _ls_stream]), _config(base_log_url="https://docs.example.test")
)
