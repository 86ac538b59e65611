"""The ASGI middleware: pure ASGI 3, streaming-safe (FastAPI, Starlette, any ASGI 3 app).

Usage::

    from readme_metrics import MetricsApiConfig, MetricsMiddleware

    app.add_middleware(MetricsMiddleware, config=MetricsApiConfig(api_key, group_fn))  # FastAPI, Starlette
    app = MetricsMiddleware(app, MetricsApiConfig(api_key, group_fn))                   # any ASGI 3 app

(:class:`AsgiMetricsMiddleware` is the explicit name; ``MetricsMiddleware`` picks it for an
app whose ``__call__`` is ``async def``.)

What it does with each ``http`` request:

- The filters run first (``exclude_paths``, ``allowed_http_hosts``, ``OPTIONS``); a request
  they reject is handed to the app untouched. The ``skip`` hook and the grouping function
  (sync or ``async def``) get a ``starlette.requests.Request`` over the scope, or, without
  Starlette, a small object of the same shape (:mod:`readme_metrics._asgi_request`); its
  body cannot be read, so it stays the app's. ``None`` from the grouping function means
  "do not log"; the app still serves. Should the capture itself fail (a bug of ours, or a
  ``make_request`` override that raises), a warning is logged and the request goes to the
  app untouched, unlogged.
- ``receive`` is wrapped: every ``http.request`` chunk the app reads is copied, up to
  ``max_body_bytes``, as it passes. A body the app never reads is not logged (ASGI gives
  no way to read it afterwards).
- ``send`` is wrapped: ``http.response.start`` records status and headers and gains the
  ``x-documentation-url`` header (:mod:`readme_metrics.doclink`; the one change the SDK
  makes to a response, and only when the link's base is known); ``http.response.body``
  copies the chunk (bounded) and forwards the very same message object. Nothing is joined,
  buffered, re-created or re-encoded: the client gets the app's bytes at the app's pace
  (streaming, server-sent events). For ``HEAD`` no response body is logged: the server
  sends none.
- The log is finalized exactly once: when the last body message has been sent
  (``more_body`` false; or the last trailers, or ``http.response.pathsend``), else when the
  app returns, raises or is cancelled. It has the time to response start and the total.
  An exception before the response starts is logged as the server's 500 and re-raised
  unchanged; a client that goes away (``http.disconnect`` received, or ``send`` raising
  ``OSError``) or a cancellation gives one log marked ``_completed: false``. The app is
  called exactly once per request.
- Per-request state lives in an :class:`_Exchange` made for the call, never on the
  middleware. The request path does no I/O: :meth:`Client.submit` is a non-blocking append;
  HAR building, redaction and delivery run on the worker thread.

``lifespan`` and ``websocket`` scopes (and any other) go to the app untouched. One addition
on ``lifespan``: when the app reports ``lifespan.shutdown.complete``, the queue is flushed
(within ``shutdown_timeout``, in a thread, so the event loop keeps running) before the
message is passed on, so a graceful stop delivers what is queued.

Limits:

- A server that silently drops ``send`` after a disconnect (uvicorn does) and an app that
  never calls ``receive`` leave the middleware unable to see the disconnect; such an
  exchange is logged as complete. (Starlette's streaming responses do listen, so they
  are logged as incomplete.)
- uvicorn ends a SIGTERM stop by re-raising the signal, so ``atexit`` handlers never run
  there: the lifespan flush above is what delivers the last events. With ``--lifespan
  off``, or an app that refuses the lifespan scope, events still queued at that moment
  are lost.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from readme_metrics._adapter import Adapter
from readme_metrics._asgi_request import make_request
from readme_metrics._hooks import Hooks
from readme_metrics._links import OutgoingLinks
from readme_metrics._log import logger, warn_limited
from readme_metrics._policy import view_route
from readme_metrics.capture import BodyCopy, Capture, Extras, header_pairs, path_as_latin1

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _host_header(headers: list[Any]) -> str:
    """The first ``Host`` header of ASGI byte pairs, as text (``""``: none)."""
    try:
        for name, value in headers:
            if len(name) == 4 and name.lower() == b"host":
                return value.decode("latin-1")  # type: ignore[no-any-return]
        return ""
    except (AttributeError, TypeError, ValueError):  # not bytes: tolerate, never raise into the app
        for name, value in header_pairs(headers):
            if name.lower() == "host":
                return value
        return ""


class _Exchange:
    """One request's state and its ``receive``/``send`` wrappers (never on the middleware)."""

    __slots__ = (
        "_receive",
        "_send",
        "capture",
        "client",
        "disconnected",
        "doclink",
        "done",
        "ending",
        "head",
        "middleware",
        "path",
        "routed",
        "scope",
        "trailers",
    )

    def __init__(
        self, middleware: AsgiMetricsMiddleware, capture: Capture, receive: Receive, send: Send, scope: Scope, path: str
    ) -> None:
        self.capture = capture
        self.middleware = middleware
        self.scope = scope
        self.path = path  # as the hooks' request has it
        self.routed = capture.extras is None
        self.client = middleware.client
        self.doclink = middleware.doclink
        self._receive = receive
        self._send = send
        self.done = False
        self.disconnected = False
        self.ending = False  # the last message is being sent: a disconnect now is the normal end
        self.trailers = False
        self.head = capture.method == "HEAD"  # the server sends no body: the log keeps none

    async def receive(self) -> Message:
        message = await self._receive()
        kind = message.get("type")
        if kind == "http.request":
            body = message.get("body")
            if body and not self.done:  # once finished, the worker owns the capture
                if not self.routed:  # the app has routed: the view's policy sets the body limits
                    self.route()
                self.capture.request_body.add(body)
        elif kind == "http.disconnect" and not self.done and not self.ending:
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.body":
            body = message.get("body")
            if body and not self.head and not self.done:
                self.capture.response_body.add(body)
            last = not message.get("more_body", False) and not self.trailers
        elif kind == "http.response.start":
            if not self.routed:  # the view's policy, for a request whose body the app never read
                self.route()
            headers = message.get("headers", ())
            if not isinstance(headers, (list, tuple)):  # a one-shot iterable: keep it readable
                headers = list(headers)
                message["headers"] = headers
            # A new list: the capture keeps it as the app gave it (ASGI's byte pairs; the
            # worker decodes them), unchanged by whatever the server does with the message.
            kept = self.doclink.add_to_raw(self.capture, headers)  # the one change to a response
            if len(kept) != len(headers):
                message = {**message, "headers": kept}
                kept = list(kept)
            try:
                self.capture.response_started(int(message["status"]), kept)
            except Exception as exc:  # a malformed message is the server's to refuse, not ours
                warn_limited("asgi_start", "readme_metrics: unreadable http.response.start (%s)", exc)
            self.trailers = bool(message.get("trailers", False))
            last = False
        elif kind == "http.response.trailers":
            last = not message.get("more_trailers", False)
        elif kind == "http.response.pathsend":
            last = True
        else:  # zero-copy send, push, debug, anything newer: passed on
            last = kind == "http.response.zerocopysend" and not message.get("more_body", False)
        self.ending = last
        try:
            await self._send(message)
        except OSError as exc:  # the client went away (uvicorn's ClientDisconnected is one)
            self.disconnected = True
            self.finish(exc)
            raise
        if last:
            self.finish()

    def route(self) -> None:
        """The route and the view's policy, once the app has routed (``scope["endpoint"]``)."""
        capture = self.capture
        self.middleware.routed(capture, self.scope)
        self.routed = capture.extras is None or capture.extras.route is not None

    def finish(self, error: BaseException | None = None, *, returned: bool = False) -> None:
        """Close and submit the capture, once. ``error``: what ended the exchange early."""
        if self.done:
            return
        self.done = True
        capture = self.capture
        started = capture.response_start_mono is not None
        # The server answers 500 itself when the app fails before starting a response (or
        # returns without starting one); a disconnect or a cancellation is no 500.
        server_500 = (
            not started
            and not self.disconnected
            and ((error is not None and isinstance(error, Exception)) or (error is None and returned))
        )
        completed = error is None and not returned and not self.disconnected
        capture.finish(completed=completed, error=error, server_500=server_500)
        kept = True
        if capture.extras is not None:  # route policies, sampling, response-aware hooks
            middleware, scope = self.middleware, self.scope
            # A client that went away (or a cancellation) is no error of the app's.
            capture.extras.gone = self.disconnected or isinstance(error, asyncio.CancelledError)
            kept = middleware.policies.decide(
                capture,
                lambda: middleware.routed(capture, scope),
                lambda: middleware.make_request(scope, capture.host, self.path),
            )
        if kept:
            self.client.submit(capture)
        OutgoingLinks.settle(capture, kept)  # the calls made while serving it follow it


class AsgiMetricsMiddleware(Adapter):
    """Log every HTTP exchange of an ASGI 3 app to the metrics API. See the module docstring."""

    def __init__(self, app: ASGIApp, config: MetricsApiConfig) -> None:
        super().__init__(config)
        self.app = app

    def make_request(self, scope: Scope, host: str, path: str) -> Any:
        """The object the grouping function and the skip hook receive (see the module
        docstring); framework integrations may override it."""
        return make_request(scope, host, path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            try:
                capture = self._begin(scope)
                if capture is not None and not isinstance(capture, Capture):  # an async hook to await
                    capture = await capture
            except Exception as exc:  # our bug (or a make_request override's) must not fail the request
                warn_limited(
                    "asgi_capture",
                    "readme_metrics: could not capture the request (%s: %s); serving it unlogged",
                    type(exc).__name__,
                    exc,
                )
                capture = None
            if capture is None:
                token = OutgoingLinks.enter(None, self.config)  # not logged: nor are its calls
                try:
                    await self.app(scope, receive, send)
                finally:
                    OutgoingLinks.leave(token)
                return
            exchange = _Exchange(self, capture, receive, send, scope, _full_path(scope))
            token = OutgoingLinks.enter(capture, self.config)  # outgoing calls link to this request
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except BaseException as exc:
                exchange.finish(exc)
                raise
            finally:
                OutgoingLinks.leave(token)
            exchange.finish(returned=True)
        elif kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        else:
            await self.app(scope, receive, send)

    async def _capture(self, scope: Scope) -> Capture | None:
        """A capture for this request, or None when it is not to be logged."""
        capture = self._begin(scope)
        if capture is not None and not isinstance(capture, Capture):
            capture = await capture
        return capture

    def _begin(self, scope: Scope) -> Capture | Awaitable[Capture | None] | None:
        """A capture for this request, None when it is not to be logged, or, when a hook
        is ``async def``, an awaitable giving one of those. No coroutine is made for a
        request whose hooks are plain functions (most)."""
        method: str = scope.get("method", "GET")
        path: str = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and not path.startswith(root):  # ASGI servers before 2024 left root_path out of path
            path = root + path
        # The scope's byte pairs as they are (a list of our own: the app may change the
        # scope's); the worker decodes them.
        headers = list(scope.get("headers", ()))
        host = _host_header(headers) or _server_host(scope)
        hooks = self.hooks
        if (hooks.filtering or method == "OPTIONS") and not hooks.allows(method, host, path, headers):
            return None
        extras = self.policies.start(path)
        if extras is None:  # a route never logged
            return None
        request = self.make_request(scope, host, path) if hooks.needs_request else None
        if hooks.has_skip:
            skip = hooks.skipped(request, allow_async=True)
            if skip is not False and skip is not True:  # an async hook's awaitable
                return self._after_skip(scope, method, host, path, headers, request, skip, extras)
            if skip:
                return None
        group = hooks.group(request)
        if group is None:
            return None
        if type(group) is not dict and inspect.isawaitable(group):
            return self._after_group(scope, method, host, path, headers, group, extras)
        return self._new_capture(scope, method, host, path, headers, group, extras)

    async def _after_skip(
        self,
        scope: Scope,
        method: str,
        host: str,
        path: str,
        headers: list[Any],
        request: Any,
        skip: Any,
        extras: Extras,
    ) -> Capture | None:
        if await Hooks.resolve_skip(skip):
            return None
        group = self.hooks.group(request)
        if inspect.isawaitable(group):
            group = await Hooks.resolve(group)
        if group is None:
            return None
        return self._new_capture(scope, method, host, path, headers, group, extras)

    async def _after_group(
        self, scope: Scope, method: str, host: str, path: str, headers: list[Any], group: Any, extras: Extras
    ) -> Capture | None:
        group = await Hooks.resolve(group)
        if group is None:
            return None
        return self._new_capture(scope, method, host, path, headers, group, extras)

    def _new_capture(
        self, scope: Scope, method: str, host: str, path: str, headers: list[Any], group: Any, extras: Extras
    ) -> Capture:
        client = scope.get("client")
        limit = self.policies.limit(extras)
        capture = Capture(
            method,
            scope.get("scheme", "http"),
            host,
            path_as_latin1(path),  # the capture holds the path's bytes as latin-1, as WSGI does
            scope.get("query_string", b"").decode("latin-1"),
            "HTTP/" + scope.get("http_version", "1.1"),
            client[0] if client else None,
            headers,
            BodyCopy(limit),
            BodyCopy(limit),
            group,
        )
        capture.extras = extras
        return capture

    def routed(self, capture: Capture, scope: Scope) -> None:
        """The route the app matched (Starlette and FastAPI set ``scope["route"]``), and
        the policy of its endpoint (``@Route(...)``), once the app has routed."""
        extras = capture.extras
        if extras is None or extras.route is not None:
            return
        template = getattr(scope.get("route"), "path", None)
        if isinstance(template, str) and "endpoint" in scope:
            extras.route = scope.get("root_path", "") + template
            self.policies.view(capture, view_route(scope.get("endpoint")))

    def _lifespan_send(self, send: Send) -> Send:
        """``send`` for the lifespan scope: flush the queue before passing on shutdown.complete."""

        async def lifespan_send(message: Message) -> None:
            if message.get("type") == "lifespan.shutdown.complete":
                await self._flush_off_loop()
            await send(message)

        return lifespan_send

    async def _flush_off_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): the flush at interpreter exit still runs
            return
        try:
            await loop.run_in_executor(None, self.client.close, self.config.shutdown_timeout)
        except Exception:
            logger.exception("readme_metrics: error while flushing at lifespan shutdown")


def _full_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    return root + path if root and not path.startswith(root) else path


def _server_host(scope: Scope) -> str:
    server = scope.get("server")
    if not server:
        return "localhost"
    host, port = server[0], server[1]
    if port is None:
        return str(host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port == _DEFAULT_PORTS.get(scope.get("scheme", "http")) else f"{host}:{port}"
