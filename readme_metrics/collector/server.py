"""The collector's HTTP server: the metrics API's ingest endpoint, the dashboard and its JSON.

Routes (all answers are JSON unless said otherwise):

``POST /v1/request``
    The metrics API's ingest call. ``Authorization: Basic base64("<api key>:")``; the body
    is a JSON array of log objects, plain or ``Content-Encoding: gzip`` (``Content-Length``
    or chunked). Every log of the batch is validated before any is stored: a malformed
    batch gets ``400 {"error": "<reason>"}`` and stores nothing; a missing or unknown key
    gets 401; a body (or its decompressed form) over ``max_batch_bytes``, or one whose
    parsing would cost more than ``max_batch_values`` values or ``max_batch_depth`` levels
    (see :mod:`.ingest`), gets 413; past ``max_concurrent_ingests`` batches at once, 503
    with ``Retry-After``. Each refusal is logged, one warning per answer code a minute. A
    ``Content-Length`` other than plain ASCII digits, or a chunk size other than hexadecimal
    digits, gets 400 and the connection is closed. JSON's non-standard ``NaN`` and
    ``Infinity`` (and numbers too large for a float) are refused (400), as are strings
    holding a lone UTF-16 surrogate (``"\\ud800"``), which cannot be stored as UTF-8. Success
    is ``202 {"accepted": n, "stored": n_new}`` (a log id already stored is not stored again).
    With no API keys configured, any non-empty key is accepted. While the collector stops,
    a batch whose body is being read or stored is finished (202); a new one gets 503 with
    ``Retry-After`` (the SDK retries it later).
``GET /v1``
    ``{"baseUrl": "<collector URL>"}`` (same auth): the base of documentation links, so that
    ``{baseUrl}/logs/{_id}`` opens that log in the dashboard.
``GET /`` and ``GET /logs/<id>``
    The dashboard (one static HTML page); ``/logs/<id>`` opens on that log.
``GET /api/summary``, ``GET /api/logs``, ``GET /api/logs/<id>``
    The dashboard's figures, the log list (``limit``, ``offset``) and one whole log. Filters
    as query parameters: ``since``/``until`` (Unix seconds), ``endpoint``, ``status``
    (``2xx``, ``404``, ``errors``; comma-separated), ``group`` (caller id), ``q`` (search).
``GET /api/export.har`` (filters or ``ids=a,b``) and ``POST /api/export.har`` (``{"ids": [...]}``
or ``{"filters": {...}}``)
    The selected logs as one HAR 1.2 file (``Content-Disposition: attachment``), oldest first.
``GET /healthz``
    ``{"ok": true, "logs": <count>, "latest": <n>}``: ``latest`` changes when logs are
    stored (the dashboard polls it to refresh as logs arrive).

The server listens on IPv4, or on IPv6 when the host holds a colon (``::1``; ``::`` also
accepts IPv4 where the system allows dual-stack sockets).

The dashboard routes carry no authentication: logs can hold personal data, so the
collector binds to 127.0.0.1 by default, and while bound to a loopback address it answers
only loopback host names, on every route (a guard against DNS rebinding); a ``POST``
must be ``application/json`` from no other site's ``Origin`` (see :mod:`.guard`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from readme_metrics._log import logger, warn_limited
from readme_metrics._version import __version__
from readme_metrics.collector.body import read_body
from readme_metrics.collector.errors import HttpError
from readme_metrics.collector.export import EXPORT_LIMIT, export_request, har_of
from readme_metrics.collector.guard import check_host, check_post, is_loopback
from readme_metrics.collector.ingest import (
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_DEPTH,
    DEFAULT_MAX_BATCH_VALUES,
    DEFAULT_MAX_CONCURRENT_INGESTS,
    BatchLimits,
    decode_json_body,
)
from readme_metrics.collector.storage import (
    Filters,
    InvalidLogError,
    Storage,
    StorageClosedError,
    validate_batch,
)

__all__ = ["DEFAULT_MAX_BATCH_BYTES", "Collector", "HttpError", "dashboard_html"]


def dashboard_html() -> bytes:
    """The dashboard page (package data: ``readme_metrics/collector/static/index.html``)."""
    return resources.files("readme_metrics.collector").joinpath("static/index.html").read_bytes()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        if self.server_address[0] == "::":  # also accept IPv4 where the system allows it
            with contextlib.suppress(AttributeError, OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class Collector:
    """The server. ``with Collector(Storage(path)) as c: ... c.url`` runs it on a thread.

    ``serve_forever()`` runs it in the calling thread instead (the ``serve`` command).
    """

    def __init__(
        self,
        storage: Storage,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_keys: Iterable[str] = (),
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_batch_values: int = DEFAULT_MAX_BATCH_VALUES,
        max_batch_depth: int = DEFAULT_MAX_BATCH_DEPTH,
        max_concurrent_ingests: int = DEFAULT_MAX_CONCURRENT_INGESTS,
        public_url: str | None = None,
        refusal_log_every: float = 60.0,
    ) -> None:
        self.storage = storage
        self.api_keys = frozenset(api_keys)
        self.limits = BatchLimits(max_batch_bytes, max_batch_values, max_batch_depth)
        self.max_concurrent_ingests = max_concurrent_ingests
        self.public_url = public_url.rstrip("/") if public_url else None
        self.refusal_log_every = refusal_log_every  # seconds between two warnings of one kind
        self.loopback_only = is_loopback(host)
        self._page = dashboard_html()
        self._active = 0  # ingests whose body is being read or stored (under _active_cond)
        self._active_cond = threading.Condition()
        self._stop = threading.Event()  # set under _active_cond: no ingest starts after it
        self._thread: threading.Thread | None = None
        self._pruner: threading.Thread | None = None
        collector = self

        class Handler(_Handler):
            pass

        Handler.collector = collector
        host = host.strip("[]")
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self.httpd = server_class((host, port), Handler)
        self.httpd.daemon_threads = True
        bound_host, bound_port = self.httpd.server_address[:2]
        shown = str(bound_host)
        if shown == "0.0.0.0":
            shown = "127.0.0.1"
        elif shown == "::":
            shown = "::1"
        if ":" in shown:
            shown = f"[{shown}]"
        self.port = int(bound_port)
        self.url = f"http://{shown}:{self.port}"

    # -- running -----------------------------------------------------------------------

    def _start_pruner(self) -> None:
        def prune_periodically() -> None:
            interval = max(self.storage.prune_interval, 1.0)
            while not self._stop.wait(interval):
                try:
                    self.storage.prune()
                except Exception:
                    logger.exception("readme_metrics collector: retention pruning failed")

        self.storage.prune()
        self._pruner = threading.Thread(target=prune_periodically, name="readme-metrics-pruner", daemon=True)
        self._pruner.start()

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` (from another thread) or an exception."""
        self._start_pruner()
        self.httpd.serve_forever(poll_interval=0.1)

    def start(self) -> Collector:
        """Serve on a background thread."""
        self._start_pruner()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.1,), name="readme-metrics-collector", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let batches being read or stored finish (within ``timeout``), close.

        From then on a new batch (say on a kept-alive connection) gets 503, never a
        half-closed store.
        """
        deadline = time.monotonic() + timeout
        with self._active_cond:
            self._stop.set()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout)
        with self._active_cond:
            while self._active and time.monotonic() < deadline:
                self._active_cond.wait(deadline - time.monotonic())
        if self._pruner is not None:
            self._pruner.join(max(deadline - time.monotonic(), 0.1))
        self.httpd.server_close()
        self.storage.close()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- ingest ------------------------------------------------------------------------

    def check_key(self, authorization: str | None) -> str:
        """The API key of a Basic ``Authorization`` header, or :class:`HttpError` 401."""
        challenge = {"WWW-Authenticate": 'Basic realm="readme-metrics collector"'}
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not token.strip():
            raise HttpError(401, "missing Basic authorization with the API key", challenge)
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise HttpError(401, "malformed Basic authorization", challenge) from None
        key = decoded.partition(":")[0]
        if not key:
            raise HttpError(401, "the API key (the Basic user name) is empty", challenge)
        if self.api_keys and key not in self.api_keys:
            raise HttpError(401, "unknown API key", challenge)
        return key

    def begin_ingest(self) -> None:
        """Count an ingest as active (before its body is read), or 503 once stopping or busy.

        At most ``max_concurrent_ingests`` batches are read, parsed and stored at once, so
        that memory is bounded by that many times what one batch may cost.
        """
        with self._active_cond:
            if self._stop.is_set():
                raise HttpError(503, "the collector is stopping; retry later", {"Retry-After": "5"})
            if self._active >= self.max_concurrent_ingests:
                raise HttpError(
                    503, f"{self._active} batches are being received already; retry later", {"Retry-After": "1"}
                )
            self._active += 1

    def end_ingest(self) -> None:
        with self._active_cond:
            self._active -= 1
            self._active_cond.notify_all()

    def ingest(self, body: bytes, encoding: str) -> dict[str, int]:
        """Validate and store one batch (all or nothing)."""
        payload = decode_json_body(body, encoding, self.limits)
        try:
            records = validate_batch(payload)
        except InvalidLogError as exc:
            raise HttpError(400, str(exc)) from None
        try:
            stored = self.storage.insert(records)
        except StorageClosedError:  # stop() gave up waiting for this batch
            raise HttpError(503, "the collector is stopping; retry later", {"Retry-After": "5"}) from None
        return {"accepted": len(records), "stored": stored}

    def log_refusal(self, client: str, error: HttpError) -> None:
        """A warning for a refused batch, at most one per answer code per ``refusal_log_every``."""
        warn_limited(
            f"collector refused {error.status}",
            "readme_metrics collector: refused a batch from %s: %s (HTTP %d)",
            client,
            error.reason,
            error.status,
            every=self.refusal_log_every,
        )

    def base_url(self, host_header: str | None) -> str:
        if self.public_url:
            return self.public_url
        return f"http://{host_header}" if host_header else self.url


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"readme-metrics-collector/{__version__}"
    timeout = 120  # idle keep-alive connections end after this many seconds
    collector: Collector
    _body_read = False

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("collector: %s " + format, self.address_string(), *args)

    # -- plumbing ----------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", headers)

    def _read_body(self, limit: int) -> bytes:
        """The request body (Content-Length or chunked), at most ``limit`` bytes."""
        self._body_read = True
        return read_body(self.rfile, self.headers, limit)

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}

    def _dispatch(self, method: str) -> None:
        self._body_read = False
        path = unquote(urlsplit(self.path).path)
        try:
            self._route(method, path)
        except HttpError as exc:
            if exc.close:
                self.close_connection = True
            if method == "POST" and path == "/v1/request":
                self.collector.log_refusal(self.address_string(), exc)
            if not self._body_read and (self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding")):
                self.close_connection = True  # the unread body must not be taken for the next request
            self._json(exc.status, {"error": exc.reason}, exc.headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            logger.exception("readme_metrics collector: error answering %s %s", method, self.path)
            self.close_connection = True
            self._json(500, {"error": f"internal error: {type(exc).__name__}"})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- routes ------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> None:
        c = self.collector
        check_host(c.loopback_only, self.headers.get("Host"))
        if method == "POST":
            check_post(
                self.headers.get("Content-Type"), self.headers.get("Origin"), self.headers.get("Host"), c.public_url
            )
        if path == "/v1/request":
            if method != "POST":
                raise HttpError(405, "use POST", {"Allow": "POST"})
            c.check_key(self.headers.get("Authorization"))
            c.begin_ingest()  # before the body is read: stop() waits for this batch
            try:
                body = self._read_body(c.limits.max_bytes)
                result = c.ingest(body, self.headers.get("Content-Encoding") or "")
            finally:
                c.end_ingest()
            self._json(202, result)
            return
        if path in ("/v1", "/v1/"):
            c.check_key(self.headers.get("Authorization"))
            self._json(200, {"baseUrl": c.base_url(self.headers.get("Host"))})
            return
        if path == "/healthz":
            self._json(200, {"ok": True, "logs": c.storage.count(), "latest": c.storage.latest()})
            return
        if method == "GET" and (path == "/" or path.startswith("/logs/")):
            self._send(200, c._page, "text/html; charset=utf-8", {"Content-Security-Policy": _CSP})
            return
        if path == "/api/export.har":
            self._export(method)
            return
        if method != "GET":
            raise HttpError(405, "use GET", {"Allow": "GET"})
        query = self._query()
        if path == "/api/summary":
            self._json(200, c.storage.summary(self._filters(query)))
        elif path == "/api/logs":
            filters = self._filters(query)
            limit = self._int(query, "limit", 100, 1, 1000)
            offset = self._int(query, "offset", 0, 0, 10**9)
            logs = c.storage.logs(filters, limit=limit, offset=offset)
            self._json(200, {"total": c.storage.count(filters), "offset": offset, "logs": logs})
        elif path.startswith("/api/logs/"):
            log = c.storage.get(path[len("/api/logs/") :])
            if log is None:
                raise HttpError(404, "no such log")
            self._json(200, log)
        else:
            raise HttpError(404, f"no route {path}")

    @staticmethod
    def _filters(query: dict[str, str]) -> Filters:
        try:
            return Filters.from_query(query)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None

    @staticmethod
    def _int(query: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
        try:
            value = int(query.get(name) or default)
        except ValueError:
            raise HttpError(400, f"{name} must be an integer") from None
        return min(max(value, lo), hi)

    def _export(self, method: str) -> None:
        c = self.collector
        ids: list[str] | None = None
        filters = Filters()
        if method == "POST":
            limits = BatchLimits(16 * 1024 * 1024, c.limits.max_values, c.limits.max_depth)
            body = self._read_body(limits.max_bytes) or b"{}"
            ids, filters = export_request(decode_json_body(body, self.headers.get("Content-Encoding") or "", limits))
        else:
            query = self._query()
            if query.get("ids"):
                ids = [i for i in query["ids"].split(",") if i]
            else:
                filters = self._filters(query)
        logs = c.storage.full_logs(ids=ids, filters=filters, limit=EXPORT_LIMIT)
        body = json.dumps(har_of(logs), ensure_ascii=False, indent=1).encode("utf-8")
        name = time.strftime("readme-metrics-%Y%m%d-%H%M%S.har")
        self._send(
            200, body, "application/json; charset=utf-8", {"Content-Disposition": f'attachment; filename="{name}"'}
        )


_CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
