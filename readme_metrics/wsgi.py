"""The WSGI middleware.

Usage, for any WSGI application (Flask shown)::

    from readme_metrics import MetricsApiConfig, MetricsMiddleware

    app.wsgi_app = MetricsMiddleware(app.wsgi_app, MetricsApiConfig(api_key, group_fn))

What it does with each request:

- The grouping function is called once, with a ``werkzeug.Request`` over the environ (its
  body is not read); ``None``: do not log. The route (Flask's rule) is read at ``start_response``.
- ``wsgi.input`` is wrapped so that whatever the app reads (``read()``, ``read(n)``,
  ``readline()``, ``readinto()``, iteration) is copied, up to ``max_body_bytes``, as it
  passes. A body the app never reads is read for the log after the response only when
  the server has already buffered it (waitress, test clients); from a socket (gunicorn)
  it is not, since a client that never sends it would hold the worker: the log then has
  the declared ``bodySize`` and no text.
- The response iterable is passed through chunk by chunk (never joined), keeping its
  ``len()`` when it has one (servers frame responses by it); ``write()`` from
  ``start_response`` is supported; the app iterable's ``close()`` is always called.
- The log is finalized once, at ``close()``: complete if the iterable was exhausted, else not
  (client gone). An app's exception is recorded (a 500 if no byte had left) and re-raised.

Limit: an app that returns the server's ``wsgi.file_wrapper`` (e.g. ``send_file``) gets
the same bytes, but read through the middleware instead of ``sendfile``; a server that
computes ``Content-Length`` from the wrapped file (waitress) then sends the response
chunked, unless the app set ``Content-Length`` itself (Flask's ``send_file`` does).
The request path does nothing else: HAR building, redaction and I/O run on the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from readme_metrics._adapter import Adapter
from readme_metrics._links import OutgoingLinks
from readme_metrics._log import warn_limited
from readme_metrics.capture import BodyCopy, Capture, host_with_port

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from readme_metrics.config import MetricsApiConfig


class InputCopy:
    """``wsgi.input`` with what the app reads copied into a :class:`BodyCopy`."""

    def __init__(self, stream: Any, body: BodyCopy) -> None:
        self._stream = stream
        self._body = body

    def read(self, *args: Any) -> bytes:
        data: bytes = self._stream.read(*args)
        self._body.add(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._stream.readline(*args)
        self._body.add(data)
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        for line in lines:
            self._body.add(line)
        return lines

    def readinto(self, buffer: Any) -> int | None:
        # werkzeug's LimitedStream (Flask under its dev server, waitress...) reads this way.
        if not hasattr(self._stream, "readinto"):
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        count: int | None = self._stream.readinto(buffer)
        if count:
            self._body.add(memoryview(buffer)[:count])  # BodyCopy keeps (copies) only what fits
        return count

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self._body.add(line)
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Exchange:
    """One request's state (never stored on the middleware), its ``start_response`` and
    ``write``, and the response iterable handed to the server: the app's iterable, copied
    as it passes, finalizing the log on ``close()``. One object per request."""

    __slots__ = (
        "_result",
        "_server_start_response",
        "_server_write",
        "capture",
        "done",
        "environ",
        "error",
        "exhausted",
        "gone",
        "has_input_copy",
        "middleware",
        "wrote",
    )

    def __init__(
        self,
        middleware: WsgiMetricsMiddleware,
        capture: Capture,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        has_input_copy: bool,
    ) -> None:
        self.middleware = middleware
        self.capture = capture
        self.environ = environ
        self._server_start_response = start_response
        self.has_input_copy = has_input_copy
        self.error: BaseException | None = None
        self.exhausted = False
        self.gone = False
        self.done = False
        self.wrote = False
        self._result: Iterable[bytes] = ()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        capture = self.capture
        parsed = _STATUS.get(status)
        if parsed is None:
            parsed = _parse_status(status)
        headers = self.middleware.doclink.add_to(capture, headers)  # the one change to a response
        capture.response_started(parsed[0], list(headers), parsed[1])
        if capture.extras is not None:  # the route, while Flask's request is in the environ (it
            with suppress(Exception):  # clears it at the end); finish() tries again, guarded, and warns
                self.middleware.routed(capture, self.environ)
        # exc_info only when there is one: some servers' and test harnesses' start_response
        # take exactly two parameters (PEP 3333 makes the third optional).
        if exc_info is None:
            self._server_write = self._server_start_response(status, headers)
        else:
            self._server_write = self._server_start_response(status, headers, exc_info)
        return self.write

    def write(self, data: bytes) -> object:
        self.wrote = True
        self.capture.response_body.add(data)
        try:
            return self._server_write(data)
        except OSError:  # the client went away
            self.gone = True
            raise

    def __iter__(self) -> Iterator[bytes]:
        body = self.capture.response_body
        try:
            for chunk in self._result:
                body.add(chunk)
                yield chunk
        except BaseException as exc:
            self.error = exc
            raise
        self.exhausted = True

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        capture = self.capture
        error = self.error
        if self.has_input_copy and not capture.request_body.size:
            environ = self.environ
            read_unread_body(
                environ.get("wsgi.input"), environ.get("CONTENT_LENGTH"), capture, capture.request_body.limit
            )
        gone = isinstance(error, GeneratorExit) or self.gone  # the client went away: no app error
        capture.finish(
            self.exhausted and error is None,
            error,
            server_500=error is not None and not gone and not capture.response_body.size and not self.wrote,
        )
        middleware = self.middleware
        kept = True
        if capture.extras is not None:  # route policies, sampling, response-aware hooks
            capture.extras.gone = gone
            environ = self.environ
            kept = middleware.policies.decide(
                capture,
                lambda: middleware.routed(capture, environ),
                lambda: middleware.make_request(environ),
                middleware.response_of(environ),
            )
        if kept:
            middleware.client.submit(capture)
        OutgoingLinks.settle(capture, kept)  # the calls made while serving it follow it


class _SizedExchange(_Exchange):
    """For an app iterable with a length (a list): servers use ``len()`` to frame the
    response (waitress and wsgiref add ``Content-Length`` when it is 1), so it stays."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]


#: Status lines already parsed: ``"200 OK"`` -> ``(200, "OK")`` (bounded).
_STATUS: dict[str, tuple[int, str | None]] = {}


def _parse_status(status: str) -> tuple[int, str | None]:
    code, _, reason = status.partition(" ")
    try:
        parsed = (int(code), reason or None)
    except ValueError:
        parsed = (0, reason or None)
    if len(_STATUS) < 256:
        _STATUS[status] = parsed
    return parsed


class WsgiMetricsMiddleware(Adapter):
    """Log every request of a WSGI app to the metrics API. See the module docstring."""

    def __init__(self, app: WSGIApplication, config: MetricsApiConfig) -> None:
        super().__init__(config)
        self.app = app

    def make_request(self, environ: WSGIEnvironment) -> Any:
        """The object the grouping function and the skip hook receive: a
        ``werkzeug.Request`` over the environ, whose body it must not read
        (framework integrations override this to pass their own request)."""
        return Request(environ, shallow=True)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            exchange = self._begin(environ, start_response)
        except Exception as exc:  # a bug of ours (or of a make_request override): serve untouched
            warn_limited("capture", "readme_metrics: could not capture a request (%s: %s)", type(exc).__name__, exc)
            exchange = None
        if exchange is None:
            if not OutgoingLinks.on:
                return self.app(environ, start_response)
            token = OutgoingLinks.enter(None, self.config)  # not logged: nor are its calls
            try:
                return self.app(environ, start_response)
            finally:
                OutgoingLinks.leave(token)
        token = OutgoingLinks.enter(exchange.capture, self.config)  # outgoing calls link to this request
        try:
            result = self.app(environ, exchange.start_response)
        except BaseException as exc:
            exchange.error = exc
            exchange.finish()
            raise
        finally:
            OutgoingLinks.leave(token)
        exchange._result = result
        if hasattr(type(result), "__len__"):
            exchange.__class__ = _SizedExchange  # same layout; adds only __len__
        return exchange

    def _begin(self, environ: WSGIEnvironment, start_response: StartResponse) -> _Exchange | None:
        """This request's exchange, or None when it is not to be logged."""
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        headers, host = environ_headers(environ)
        hooks = self.hooks
        if (hooks.filtering or method == "OPTIONS") and not hooks.allows(method, host, path, headers):
            return None
        extras = self.policies.start(path)
        if extras is None:  # a route never logged
            return None
        request = self.make_request(environ) if hooks.needs_request else None
        if hooks.has_skip and hooks.skipped(request):
            return None
        group = hooks.group(request)
        if group is None:
            return None
        limit = self.policies.limit(extras)
        capture = Capture(
            method,
            environ.get("wsgi.url_scheme", "http"),
            host,
            path,
            environ.get("QUERY_STRING", ""),
            environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            environ.get("REMOTE_ADDR"),
            headers,
            BodyCopy(limit),
            BodyCopy(limit),
            group,
        )
        capture.extras = extras
        copied = "wsgi.input" in environ and bool(environ.get("CONTENT_LENGTH") or "HTTP_TRANSFER_ENCODING" in environ)
        if copied:
            environ["wsgi.input"] = InputCopy(environ["wsgi.input"], capture.request_body)
        return _Exchange(self, capture, environ, start_response, copied)

    def routed(self, capture: Capture, environ: WSGIEnvironment) -> None:
        """The route the app matched, read from the environ: werkzeug's ``url_rule`` of
        the request the framework put there (Flask). Integrations add the view's policy."""
        extras = capture.extras
        if extras is not None and extras.route is None:
            rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
            template = getattr(rule, "rule", None)
            if isinstance(template, str):
                extras.route = environ.get("SCRIPT_NAME", "") + template

    def response_of(self, environ: WSGIEnvironment) -> Any:
        """The framework's response object for the response-aware hooks (None: they get
        a read-only view of the status and headers). Integrations override it."""
        return None


def read_unread_body(stream: Any, content_length: Any, capture: Capture, limit: int) -> None:
    """A body nobody read, for the log (shared with the Django middleware).

    Only from a stream the server has already buffered (seekable: waitress, test clients):
    reading the socket itself could block on a client that never sends its body. Otherwise
    the log keeps the declared size and no text.
    """
    if not isinstance(stream, InputCopy) or capture.request_body.size or not limit:
        return
    try:
        length = int(content_length or 0)
    except ValueError:
        return
    if length <= 0:
        return
    try:
        if _buffered(stream._stream):
            stream.read(min(length, limit))
    except Exception:  # the server may have closed the stream; the log keeps what it has
        pass
    capture.request_body.size = max(capture.request_body.size, length)


def _buffered(stream: Any) -> bool:
    """Whether reading ``stream`` cannot wait on the network (an in-memory or file buffer)."""
    try:
        return bool(stream.seekable())
    except Exception:
        return False


#: Environ layouts already seen: the tuple of an environ's keys -> the ``HTTP_*`` keys
#: among them, their HTTP names and one getter of their values (bounded; see
#: :func:`environ_headers`).
_LAYOUTS: dict[tuple[str, ...], tuple[tuple[str, ...], Callable[[Any], Any]]] = {}
_MAX_LAYOUTS = 256


def _layout(keys: tuple[str, ...]) -> tuple[tuple[str, ...], Callable[[Any], Any]]:
    cgi = tuple(k for k in keys if k.startswith("HTTP_"))
    names = tuple(_header_name(k) for k in cgi)
    getter: Callable[[Any], Any]
    if not cgi:
        getter = _no_values
    elif len(cgi) == 1:
        only = cgi[0]
        getter = lambda environ: (environ[only],)  # noqa: E731
    else:
        getter = itemgetter(*cgi)
    if len(_LAYOUTS) >= _MAX_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[keys] = entry = (names, getter)
    return entry


def _no_values(environ: Any) -> tuple[str, ...]:
    return ()


def environ_headers(environ: Mapping[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """The request headers of a WSGI environ (CGI names made HTTP names) and its host.

    The ``HTTP_*`` items in environ order, then ``Content-Type`` and ``Content-Length``
    when not empty. Requests of one server and one kind of client come with the same
    environ keys in the same order, so the names are worked out once per such layout
    and the values then taken in one call.
    """
    keys = tuple(environ)
    entry = _LAYOUTS.get(keys)
    if entry is None:
        entry = _layout(keys)
    headers = list(zip(entry[0], entry[1](environ), strict=True))
    value = environ.get("CONTENT_TYPE")
    if value:
        headers.append(("Content-Type", value))
    value = environ.get("CONTENT_LENGTH")
    if value:
        headers.append(("Content-Length", value))
    host = environ.get("HTTP_HOST") or host_with_port(
        environ.get("SERVER_NAME", "localhost"), environ.get("SERVER_PORT"), environ.get("wsgi.url_scheme", "http")
    )
    return headers, host


def _header_name(cgi_name: str) -> str:
    return cgi_name[5:].replace("_", "-").title()
