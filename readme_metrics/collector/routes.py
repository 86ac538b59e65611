"""The collector's routes, as a Starlette application (see docs/collector.md for the answers).

``POST /v1/request`` and ``GET /v1``: the metrics API (API key). ``GET /`` and
``/logs/<id>``: the dashboard page; ``/api/summary``, ``/api/outgoing``, ``/api/logs``,
``/api/logs/<id>``, ``/api/export.har`` and ``/healthz``: its JSON; ``/metrics``: Prometheus. Every route first
passes the ``Host`` and cross-site ``POST`` rules of :mod:`.guard`; all but the metrics
API's then pass the access rule of :mod:`.access`. Errors are ``{"error": reason}``.

Bodies are read as the server hands them over, with the byte bound applied as they
arrive (framing, ``Content-Length`` and chunked bodies are the server's business).
Blocking work (parsing, SQLite) runs in Starlette's thread pool.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from readme_metrics._log import logger
from readme_metrics.collector.access import Credentials, check_access, credential_required
from readme_metrics.collector.errors import HttpError
from readme_metrics.collector.export import EXPORT_LIMIT, export_request, har_of
from readme_metrics.collector.guard import check_host, check_post, is_loopback
from readme_metrics.collector.ingest import BatchLimits, decode_json_body
from readme_metrics.collector.metrics import CONTENT_TYPE, Metrics
from readme_metrics.collector.service import Service
from readme_metrics.collector.storage import Filters

_CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
_BODY_READ = "readme_metrics.body_read"
_EXPORT_BYTES = 16 * 1024 * 1024
#: Seconds a request body may stall before the connection is closed (408).
BODY_IDLE_TIMEOUT = 120.0
Handler = Callable[[Request], Awaitable[Response]]


def dashboard_html() -> bytes:
    """The dashboard page (package data: ``readme_metrics/collector/static/index.html``)."""
    return resources.files("readme_metrics.collector").joinpath("static/index.html").read_bytes()


def answer(status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> Response:
    extra = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **(headers or {})}
    return Response(body, status, extra, media_type=content_type)


def json_answer(status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return answer(status, body, "application/json; charset=utf-8", headers)


async def read_body(request: Request, limit: int, idle_timeout: float = BODY_IDLE_TIMEOUT) -> bytes:
    """The body, at most ``limit`` bytes (413 beyond; the rest of a body up to twice that is
    read and dropped so that the client gets the answer, a larger one closes the connection).
    A body not received in full within ``idle_timeout`` seconds (whether it stalls or
    trickles) gets 408 and the connection closes: a slow client cannot hold an ingest
    slot longer."""
    length_text = request.headers.get("content-length", "")
    length = int(length_text) if length_text.isdigit() else None  # the server checked the framing
    if length is not None and length > 2 * limit:
        raise HttpError(413, f"the body is larger than {limit} bytes", close=True)
    out = bytearray()
    over = False
    stream = request.stream()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + idle_timeout
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(deadline - loop.time(), 0))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise HttpError(408, f"the body did not arrive within {idle_timeout:g} s", close=True) from None
        if over:
            continue
        if len(out) + len(chunk) > limit:
            if length is None:
                raise HttpError(413, f"the body is larger than {limit} bytes", close=True)
            over = True
            out.clear()
            continue
        out += chunk
    request.scope[_BODY_READ] = True
    if over:
        raise HttpError(413, f"the body is larger than {limit} bytes")
    return bytes(out)


class Routes:
    """The handlers of one application, around one :class:`Service`."""

    def __init__(self, service: Service, metrics: Metrics, credentials: Credentials, bind_host: str) -> None:
        self.service = service
        self.metrics = metrics
        self.credentials = credentials
        self.loopback_only = is_loopback(bind_host)
        self.open_access = not credential_required(bind_host)
        self.html = dashboard_html()

    # -- the rules every route passes ----------------------------------------------------

    def check(self, request: Request, *, api: bool) -> None:
        headers = request.headers
        check_host(self.loopback_only, headers.get("host"))
        if request.method == "POST":
            check_post(headers.get("content-type"), headers.get("origin"), headers.get("host"), self.service.public_url)
        if api:
            return
        server = request.scope.get("server")
        reached_on_loopback = server is None or not server[0] or is_loopback(str(server[0]))
        required = not (self.open_access and reached_on_loopback)
        check_access(required, self.credentials, headers.get("authorization"))

    def guarded(self, handler: Handler, *, api: bool = False) -> Handler:
        async def run(request: Request) -> Response:
            self.check(request, api=api)
            return await handler(request)

        return run

    async def error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HttpError)
        if request.url.path == "/v1/request" and request.method == "POST":
            client = request.client.host if request.client else "?"
            self.service.refused(client, exc)
        headers = dict(exc.headers)
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        if exc.close or (has_body and not request.scope.get(_BODY_READ)):
            headers["Connection"] = "close"  # the unread body must not be taken for the next request
        return json_answer(exc.status, {"error": exc.reason}, headers)

    async def crash(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, ClientDisconnect):
            return Response(b"", 400)
        logger.exception("readme_metrics collector: error answering %s %s", request.method, request.url.path)
        return json_answer(500, {"error": f"internal error: {type(exc).__name__}"}, {"Connection": "close"})

    # -- the metrics API -----------------------------------------------------------------

    async def ingest(self, request: Request) -> Response:
        if request.method != "POST":
            raise HttpError(405, "use POST", {"Allow": "POST"})
        s = self.service
        s.check_key(request.headers.get("authorization"))
        s.begin_ingest()  # before the body is read: stop() waits for this batch
        try:
            body = await read_body(request, s.limits.max_bytes, s.body_timeout)
            result = await run_in_threadpool(s.ingest, body, request.headers.get("content-encoding") or "")
        finally:
            s.end_ingest()
        return json_answer(202, result)

    async def v1(self, request: Request) -> Response:
        self.service.check_key(request.headers.get("authorization"))
        fallback = f"{request.url.scheme}://{request.url.netloc}"
        return json_answer(200, {"baseUrl": self.service.base_url(request.headers.get("host"), fallback)})

    # -- the dashboard -------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return json_answer(200, await run_in_threadpool(self.service.health))

    async def page(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, "use GET", {"Allow": "GET"})
        return answer(200, self.html, "text/html; charset=utf-8", {"Content-Security-Policy": _CSP})

    async def prometheus(self, request: Request) -> Response:
        return answer(200, await run_in_threadpool(self.metrics.render), CONTENT_TYPE)

    async def api(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, "use GET", {"Allow": "GET"})
        path = request.url.path
        query = dict(request.query_params)
        storage = self.service.storage
        if path == "/api/summary":
            return json_answer(200, await run_in_threadpool(storage.summary, _filters(query)))
        if path == "/api/outgoing":
            return json_answer(200, await run_in_threadpool(storage.outgoing_summary, _filters(query)))
        if path == "/api/logs":
            filters = _filters(query)
            limit = _int(query, "limit", 100, 1, 1000)
            offset = _int(query, "offset", 0, 0, 10**9)

            def page() -> dict[str, Any]:
                logs = storage.logs(filters, limit=limit, offset=offset)
                return {"total": storage.count(filters), "offset": offset, "logs": logs}

            return json_answer(200, await run_in_threadpool(page))
        log_id = request.path_params["log_id"]
        log = None if "\x00" in log_id else await run_in_threadpool(storage.get, log_id)
        if log is None:
            raise HttpError(404, "no such log")
        return json_answer(200, log)

    async def export(self, request: Request) -> Response:
        ids: list[str] | None = None
        filters = Filters()
        if request.method == "POST":
            limits = BatchLimits(_EXPORT_BYTES, self.service.limits.max_values, self.service.limits.max_depth)
            body = await read_body(request, limits.max_bytes, self.service.body_timeout) or b"{}"
            encoding = request.headers.get("content-encoding") or ""
            parsed = await run_in_threadpool(decode_json_body, body, encoding, limits)
            ids, filters = export_request(parsed)
        elif request.method in ("GET", "HEAD"):
            query = dict(request.query_params)
            if query.get("ids"):
                ids = [i for i in query["ids"].split(",") if i]
            else:
                filters = _filters(query)
        else:
            raise HttpError(405, "use GET or POST", {"Allow": "GET, POST"})

        if ids is not None:  # an id holding NUL matches nothing (and PostgreSQL refuses it)
            ids = [i for i in ids if "\x00" not in i]

        def build() -> bytes:
            logs = self.service.storage.full_logs(ids=ids, filters=filters, limit=EXPORT_LIMIT)
            return json.dumps(har_of(logs), ensure_ascii=False, indent=1).encode("utf-8")

        name = time.strftime("readme-metrics-%Y%m%d-%H%M%S.har")
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        return answer(200, await run_in_threadpool(build), "application/json; charset=utf-8", disposition)

    async def not_found(self, request: Request) -> Response:
        raise HttpError(404, f"no route {request.url.path}")

    # -- the application -------------------------------------------------------------------

    def application(self, lifespan: Callable[[Any], AbstractAsyncContextManager[None]] | None = None) -> Starlette:
        g = self.guarded
        routes = [
            Route("/v1/request", g(self.ingest, api=True)),
            Route("/v1", g(self.v1, api=True)),
            Route("/v1/", g(self.v1, api=True)),
            Route("/", g(self.page)),
            Route("/logs/{log_id:path}", g(self.page)),
            Route("/healthz", g(self.health)),
            Route("/metrics", g(self.prometheus)),
            Route("/api/export.har", g(self.export)),
            Route("/api/summary", g(self.api)),
            Route("/api/logs", g(self.api)),
            Route("/api/outgoing", g(self.api)),
            Route("/api/logs/{log_id:path}", g(self.api)),
            Route("/{rest:path}", g(self.not_found)),
        ]
        every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]  # the handlers check methods
        routes = [Route(r.path, r.endpoint, methods=every) for r in routes]
        handlers: dict[Any, Any] = {HttpError: self.error, Exception: self.crash, ClientDisconnect: self.crash}
        return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


def _filters(query: dict[str, str]) -> Filters:
    try:
        return Filters.from_query(query)
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None


def _int(query: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(query.get(name) or default)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer") from None
    return min(max(value, lo), hi)
