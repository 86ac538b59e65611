"""Serving the collector's application with uvicorn: on a thread (:class:`Collector`), or as
the ``serve`` command's server (:func:`bind`, :class:`CollectorHttp`).

The routes and their answers are described in docs/collector.md and :mod:`.routes`.
HTTP framing is uvicorn's (h11): a ``Content-Length`` other than plain ASCII digits, two
different ones, or a chunk size other than hexadecimal digits gets 400 and the connection
closes; :class:`CollectorHttp` makes that answer the collector's JSON error.

The server listens on IPv4, or on IPv6 when the host holds a colon (``::1``; ``::`` also
accepts IPv4 where the system allows dual-stack sockets).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from readme_metrics._version import __version__
from readme_metrics.collector.app import create_app
from readme_metrics.collector.ingest import (
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_DEPTH,
    DEFAULT_MAX_BATCH_VALUES,
    DEFAULT_MAX_CONCURRENT_INGESTS,
)
from readme_metrics.collector.routes import dashboard_html
from readme_metrics.collector.service import Service
from readme_metrics.collector.settings import DEFAULT_MAX_ROUTES, Settings
from readme_metrics.collector.storage import Storage

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "Collector",
    "CollectorHttp",
    "StoppingServer",
    "bind",
    "dashboard_html",
    "url_of",
    "uvicorn_config",
]

_MALFORMED = b'{"error":"malformed request: its framing (Content-Length, chunk sizes) or head is not valid HTTP/1.1"}'


class CollectorHttp(H11Protocol):
    """uvicorn's h11 protocol, answering a malformed request with the collector's JSON 400."""

    def send_400_response(self, msg: str) -> None:
        headers = [
            (b"Content-Type", b"application/json; charset=utf-8"),
            (b"Content-Length", str(len(_MALFORMED)).encode()),
            (b"Connection", b"close"),
        ]
        try:
            self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request")))
            self.transport.write(self.conn.send(h11.Data(data=_MALFORMED)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:  # an answer was under way already: just close
            pass
        self.transport.close()


class StoppingServer(uvicorn.Server):
    """uvicorn's server, stopping gracefully on SIGINT or SIGTERM and then returning
    (uvicorn's own handlers raise the signal again once stopped, ending the process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self.should_exit and signum == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 when ``host`` holds a colon); ``OSError`` if it cannot be had."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if host == "::":  # also accept IPv4 where the system allows it
            with contextlib.suppress(AttributeError, OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (a wildcard address shown as its loopback)."""
    bound_host, bound_port = sock.getsockname()[:2]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(str(bound_host), str(bound_host))
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{bound_port}"


def uvicorn_config(app: Any, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration the collector runs with (its own logging is left alone)."""
    return uvicorn.Config(
        app,
        http=CollectorHttp,
        lifespan="on",
        log_config=None,
        access_log=options.pop("access_log", False),
        timeout_keep_alive=options.pop("timeout_keep_alive", 120),
        server_header=False,
        headers=[("Server", f"readme-metrics-collector/{__version__}")],
        **options,
    )


class Collector:
    """The collector on a thread: ``with Collector(Storage(path)) as c: ... c.url``.

    The socket is bound when it is made (``OSError`` if the address is taken); uvicorn
    serves it on a thread from :meth:`start` to :meth:`stop`.
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
        token: str | None = None,
        basic_auth: str | None = None,
        max_routes: int = DEFAULT_MAX_ROUTES,
        body_timeout: float = 120.0,
    ) -> None:
        settings = Settings(
            host=host,
            api_keys=tuple(api_keys),
            token=token,
            basic_auth=basic_auth,
            max_batch_mb=max_batch_bytes / 1024 / 1024,
            max_batch_values=max_batch_values,
            max_batch_depth=max_batch_depth,
            max_concurrent_ingests=max_concurrent_ingests,
            public_url=public_url,
            max_routes=max_routes,
            body_timeout=body_timeout,
        )
        self.storage = storage
        self.app = create_app(settings, storage=storage, refusal_log_every=refusal_log_every)
        self.service: Service = self.app.state.service
        self.loopback_only = self.app.state.loopback_only
        self._socket = bind(host, port)
        self.port = int(self._socket.getsockname()[1])
        self.url = url_of(self._socket)
        self._server = uvicorn.Server(uvicorn_config(self.app))
        self._thread: threading.Thread | None = None

    # What tests look at: the batches under way, the stop flag, the retention thread.
    @property
    def _active(self) -> int:
        return self.service._active

    @property
    def _stop(self) -> threading.Event:
        return self.service._stop

    @property
    def _pruner(self) -> threading.Thread | None:
        return self.service._pruner

    def start(self, timeout: float = 20.0) -> Collector:
        """Serve on a background thread; returns once the server answers."""
        self._thread = threading.Thread(
            target=self._server.run, args=([self._socket],), name="readme-metrics-collector", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the collector's server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new batches (503), let those being read or stored finish (within ``timeout``),
        then stop the server and close the storage."""
        deadline = time.monotonic() + timeout
        self.service.wait_idle(deadline)
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(max(deadline - time.monotonic(), 1.0) + 5)
        else:
            self.service.finish_stop(deadline)
        self._socket.close()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
