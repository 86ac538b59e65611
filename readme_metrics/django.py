"""Django: ``readme_metrics.django.MetricsMiddleware`` in ``settings.MIDDLEWARE``.

::

    # settings.py
    from readme_metrics import MetricsApiConfig

    README_METRICS_CONFIG = MetricsApiConfig(API_KEY, "myapp.metrics.group")
    MIDDLEWARE = [
        "readme_metrics.django.MetricsMiddleware",  # first: it sees the final response
        ...
    ]

The middleware is sync and async capable: under WSGI (gunicorn, uWSGI, ``runserver``) it
runs synchronously, under ASGI (uvicorn, daphne, hypercorn) as a coroutine, so Django does
not wrap it in a thread hop.

- The grouping function (and the ``skip`` hook) receive Django's ``HttpRequest``, *after*
  the view ran, so ``request.user`` and whatever the inner middleware set are there.
  Under ASGI a plain (sync) hook is called through ``sync_to_async`` (thread-sensitive:
  it runs on the thread of Django's sync code, as it may touch the database, as
  ``request.user`` does), one hop per request for both hooks; an ``async def`` hook is
  awaited in the event loop, with no hop. Without hooks there is no hop either. Under
  WSGI an ``async def`` grouping function is run to completion with ``async_to_sync``;
  an ``async def`` skip hook cannot run there and is ignored (with a warning).
- The request body is copied as the view reads it (``request.body``, ``request.POST``,
  ``request.FILES``, ``request.read()``), up to ``max_body_bytes``; the view's access to
  it is unchanged. A body the view never read is read (bounded) after the response.
- ``StreamingHttpResponse`` (sync or async iterator) and ``FileResponse`` pass through
  chunk by chunk: the iterator is wrapped, never joined. With body logging on, a
  ``FileResponse`` is streamed by Django itself rather than by the server's
  ``wsgi.file_wrapper`` (same bytes; no ``sendfile``). With ``log_body=False`` it is left
  alone.
- The log is finished when Django closes the response (after the last byte went out),
  with the status, headers and body the client received; ``x-documentation-url`` is added
  to the response when the link is known (see :mod:`readme_metrics.doclink`).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from readme_metrics._adapter import Adapter
from readme_metrics._hooks import Hooks
from readme_metrics._links import OutgoingLinks
from readme_metrics._policy import view_route
from readme_metrics.capture import BodyCopy, Capture, path_as_latin1
from readme_metrics.config import MetricsApiConfig
from readme_metrics.doclink import HEADER
from readme_metrics.wsgi import InputCopy, environ_headers, read_unread_body

__all__ = ["MetricsMiddleware"]

#: The attribute of Django's request that holds its exchange (for process_view/_exception).
EXCHANGE_ATTRIBUTE = "readme_metrics_exchange"


def _settings_config() -> Any:
    from django.conf import settings  # type: ignore[import-untyped]

    return getattr(settings, "README_METRICS_CONFIG", None)


class _Exchange:
    """One logged request: its capture and the response it got."""

    __slots__ = ("capture", "done", "exhausted", "middleware", "request", "response", "streaming")

    def __init__(self, middleware: MetricsMiddleware, request: Any, capture: Capture) -> None:
        self.middleware = middleware
        self.request = request
        self.capture = capture
        self.response: Any = None
        self.streaming = False
        self.exhausted = False
        self.done = False

    def respond(self, response: Any, group: Any) -> None:
        """The view answered and the request is to be logged: hook into the response."""
        capture = self.capture
        capture.group = group
        self.response = response
        link = self.middleware.doclink.header(capture)
        if link is not None and not response.has_header(HEADER):
            response[HEADER] = link  # the one change to a response
        capture.response_started(response.status_code, [], response.reason_phrase)
        if getattr(response, "streaming", False):
            self.streaming = True
            if getattr(response, "file_to_stream", None) is None or capture.response_body.limit:
                if getattr(response, "is_async", False):
                    response.streaming_content = self._acopy(response.streaming_content)
                else:
                    response.streaming_content = self._copy(response.streaming_content)
            else:  # a FileResponse, bodies not logged: let the server send the file itself
                self.exhausted = True
        close = response.close

        def _close() -> None:
            # finish() first: it reads an unread body, and Django's close closes the request's stream.
            try:
                self.finish()
            finally:
                close()

        response.close = _close

    def _copy(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        body = self.capture.response_body
        try:
            for chunk in chunks:
                body.add(chunk)
                yield chunk
            self.exhausted = True
        finally:
            if not self.exhausted:  # abandoned (client gone): the close may never come
                self.finish()

    async def _acopy(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        body = self.capture.response_body
        try:
            async for chunk in chunks:
                body.add(chunk)
                yield chunk
            self.exhausted = True
        finally:
            if not self.exhausted:
                self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        capture, response = self.capture, self.response
        try:
            capture.status = response.status_code
            capture.reason = response.reason_phrase
            headers = [(str(k), str(v)) for k, v in response.items()]
            headers += [("Set-Cookie", c.output(header="").strip()) for c in response.cookies.values()]
            capture.response_headers = headers
            if not self.streaming:
                for chunk in response:  # the content's parts: no join of the whole body
                    capture.response_body.add(chunk)
            elif getattr(response, "file_to_stream", None) is not None and not capture.response_body.size:
                capture.response_body.size = int(response.get("Content-Length") or 0)
            self.middleware._read_unread_body(self.request, capture)
        except Exception as exc:  # never let the log break the response's close
            capture.error = f"{type(exc).__name__}: {exc}"[:500]
        capture.finish(completed=self.exhausted or not self.streaming)
        kept = True
        if capture.extras is not None:  # route policies, sampling, response-aware hooks
            request = self.request
            kept = self.middleware.policies.decide(
                capture, lambda: _routed(request, capture), lambda: request, response
            )
        if kept:
            self.middleware.client.submit(capture)
        OutgoingLinks.settle(capture, kept)  # the calls made while serving it follow it


class MetricsMiddleware(Adapter):
    """Log every request of a Django project. See the module docstring.

    ``config`` defaults to ``settings.README_METRICS_CONFIG`` (a ``MetricsApiConfig``).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any, config: MetricsApiConfig | None = None) -> None:
        from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

        self.get_response = get_response
        config = config if config is not None else _settings_config()
        if not isinstance(config, MetricsApiConfig):
            raise ImproperlyConfigured(
                "readme_metrics: settings.README_METRICS_CONFIG must be a readme_metrics.MetricsApiConfig"
            )
        super().__init__(config)
        fn, skip = config.grouping_function, config.skip
        # Plain hooks may use the ORM: under ASGI they run through sync_to_async.
        self._sync_group = fn is not None and not iscoroutinefunction(fn)
        self._sync_skip = self.hooks.has_skip and not iscoroutinefunction(skip)  # skip(request) only
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        # Django calls these once it resolved the view / when the view raised; under ASGI
        # they are coroutines, so Django does not hop to a thread for them.
        self.process_view = self._aprocess_view if self._async else self._process_view
        self.process_exception = self._aprocess_exception if self._async else self._process_exception

    def _process_view(self, request: Any, view: Any, args: Any, kwargs: Any) -> None:
        exchange = getattr(request, EXCHANGE_ATTRIBUTE, None)
        if exchange is not None:  # the view's own @Route(...): before the view reads the body
            self.policies.view(exchange.capture, view_route(view))

    async def _aprocess_view(self, request: Any, view: Any, args: Any, kwargs: Any) -> None:
        self._process_view(request, view, args, kwargs)

    def _process_exception(self, request: Any, exception: Exception) -> None:
        exchange = getattr(request, EXCHANGE_ATTRIBUTE, None)
        if exchange is not None and exchange.capture.extras is not None:  # Django answers 500 itself
            exchange.capture.extras.exception = exception
            exchange.capture.error = type(exception).__name__

    async def _aprocess_exception(self, request: Any, exception: Exception) -> None:
        self._process_exception(request, exception)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        exchange = self._begin(request)
        token = OutgoingLinks.enter(exchange.capture if exchange is not None else None, self.config)
        try:
            response = self.get_response(request)
        finally:
            OutgoingLinks.leave(token)
        if exchange is not None:
            group = self._decide(request)
            if inspect.isawaitable(group):  # an async grouping function under WSGI
                group = _run(Hooks.resolve(group))
            self._respond(exchange, response, group)
        return response

    @staticmethod
    def _respond(exchange: _Exchange, response: Any, group: Any) -> None:
        """Hook into the response of a request to log (``group`` None: not logged, and
        neither are the outgoing calls made while serving it)."""
        if group is None:
            OutgoingLinks.settle(exchange.capture, False)
        else:
            exchange.respond(response, group)

    async def __acall__(self, request: Any) -> Any:
        exchange = self._begin(request)
        token = OutgoingLinks.enter(exchange.capture if exchange is not None else None, self.config)
        try:
            response = await self.get_response(request)
        finally:
            OutgoingLinks.leave(token)
        if exchange is not None:
            self._respond(exchange, response, await self._adecide(request))
        return response

    def _decide(self, request: Any) -> Any:
        """The group of this request, or None when it is not to be logged."""
        if self.hooks.skipped(request):
            return None
        return self.hooks.group(request)

    async def _adecide(self, request: Any) -> Any:
        """:meth:`_decide` under ASGI: plain hooks off the event loop (one hop for both),
        ``async def`` ones awaited in it."""
        hooks = self.hooks
        if self._sync_skip and self._sync_group:
            return await Hooks.resolve(await sync_to_async(self._decide)(request))
        if self._sync_skip:
            skip = await sync_to_async(hooks.skipped)(request, allow_async=True)
        else:
            skip = hooks.skipped(request, allow_async=True)
        if inspect.isawaitable(skip):
            skip = await Hooks.resolve_skip(skip)
        if skip:
            return None
        if self._sync_group:
            return await Hooks.resolve(await sync_to_async(hooks.group)(request))
        return await Hooks.resolve(hooks.group(request))

    def _begin(self, request: Any) -> _Exchange | None:
        """Start a capture before the view runs (None when the filters leave it out)."""
        meta = request.META
        method = request.method or "GET"
        path = path_as_latin1(request.path)
        headers, host = environ_headers(meta)
        if not self.hooks.allows(method, host, path, headers):
            return None
        extras = self.policies.start(path)
        if extras is None:  # a route never logged
            return None
        limit = self.policies.limit(extras)
        scope = getattr(request, "scope", None)
        if isinstance(scope, dict):  # ASGI
            http_version = "HTTP/" + str(scope.get("http_version", "1.1"))
            scheme = str(scope.get("scheme", "http"))
        else:
            http_version = meta.get("SERVER_PROTOCOL", "HTTP/1.1")
            scheme = meta.get("wsgi.url_scheme", "http")
        capture = Capture(
            method=method,
            scheme=scheme,
            host=host,
            path=path,
            query=meta.get("QUERY_STRING", ""),
            http_version=http_version,
            client_address=meta.get("REMOTE_ADDR"),
            request_headers=headers,
            request_body=BodyCopy(limit),
            response_body=BodyCopy(limit),
        )
        capture.extras = extras
        stream = getattr(request, "_stream", None)
        if stream is not None:  # limit 0 too: a view's policy may raise it, and the size counts
            request._stream = InputCopy(stream, capture.request_body)
        exchange = _Exchange(self, request, capture)
        setattr(request, EXCHANGE_ATTRIBUTE, exchange)
        return exchange

    def _read_unread_body(self, request: Any, capture: Capture) -> None:
        """A body the view never read: take up to ``max_body_bytes`` of it for the log."""
        limit = capture.request_body.limit
        if capture.request_body.size or not limit:
            return
        cached = getattr(request, "_body", None)
        if isinstance(cached, bytes):  # read before our middleware ran
            capture.request_body.add(cached)
            return
        if not getattr(request, "_read_started", False):
            stream = getattr(request, "_stream", None)
            read_unread_body(stream, request.META.get("CONTENT_LENGTH"), capture, limit)


def _routed(request: Any, capture: Capture) -> None:
    """``_route``: the route Django resolved (``path()`` or ``re_path()``), after the
    script name; absent when nothing resolved (a 404)."""
    extras = capture.extras
    route = getattr(getattr(request, "resolver_match", None), "route", None)
    if extras is not None and isinstance(route, str):
        extras.route = request.META.get("SCRIPT_NAME", "").rstrip("/") + "/" + route.lstrip("/")


def _run(awaitable: Any) -> Any:
    from asgiref.sync import async_to_sync

    async def _await() -> Any:
        return await awaitable

    return async_to_sync(_await)()
