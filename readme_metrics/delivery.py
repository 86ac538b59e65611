"""Delivery: a bounded queue and one worker thread that turn captures into batches.

The request path calls :meth:`Client.submit` only: a non-blocking append to a queue bounded
by event count and by bytes (a full queue drops the event and counts it). The worker
thread builds the log objects (HAR, redaction, the user's mask hook), encodes them and
posts them to ``{metrics_server}/v1/request`` with one keep-alive ``requests.Session``.

A batch leaves as soon as ``buffer_length`` events wait or ``flush_interval`` seconds have
passed, carrying whatever else is queued up to ``max_batch_events``. At interpreter exit
the queue is flushed within ``shutdown_timeout`` seconds; in a forked child (gunicorn
``--preload``) the client starts afresh with its own thread and an empty queue.
"""

from __future__ import annotations

import atexit
import base64
import collections
import json
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import requests

from readme_metrics._log import logger, warn_limited
from readme_metrics._version import __version__
from readme_metrics.capture import Capture
from readme_metrics.har import build_log
from readme_metrics.redaction import Redactor

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig

Log = dict[str, Any]


class DeliveryError(Exception):
    """The metrics API did not accept a batch."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Transport(Protocol):
    """Where batches of log objects go. Raises :class:`DeliveryError` on failure."""

    def send(self, logs: list[Log]) -> int:
        """Deliver one batch; return the bytes sent."""
        ...

    def close(self) -> None: ...


def encode(logs: list[Log]) -> bytes:
    return json.dumps(logs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class HttpTransport:
    """POST ``/v1/request`` on the metrics API, Basic auth with the API key."""

    def __init__(self, config: MetricsApiConfig) -> None:
        self.url = f"{config.metrics_server}/v1/request"
        self.timeout = config.timeout
        token = base64.b64encode(f"{config.api_key}:".encode()).decode("ascii")
        self.headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "User-Agent": f"readme-metrics-python@{__version__}",
        }
        self.session = requests.Session()

    def send(self, logs: list[Log]) -> int:
        body = encode(logs)
        try:
            response = self.session.post(self.url, data=body, headers=self.headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise DeliveryError(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code >= 300:
            raise DeliveryError(
                f"{self.url} answered {response.status_code}: {response.text[:200]}", response.status_code
            )
        return len(body)

    def close(self) -> None:
        self.session.close()


class Client:
    """The queue, the worker thread and the counters of one configuration."""

    def __init__(self, config: MetricsApiConfig, transport: Transport | None = None) -> None:
        self.config = config
        self.redactor = Redactor(config.denylist, config.allowlist)
        self._make_transport: Callable[[], Transport] = (
            (lambda: transport) if transport else (lambda: HttpTransport(config))
        )
        self._reset()
        _clients.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child."""
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[Capture] = collections.deque()
        self._queued_bytes = 0
        self._in_flight = 0
        self._flushing = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self.transport = self._make_transport()
        self._stats: dict[str, Any] = {
            "queued": 0,
            "sent": 0,
            "batches_sent": 0,
            "batches_failed": 0,
            "bytes_sent": 0,
            "dropped": collections.Counter(),
            "last_error": None,
            "last_success": None,
        }

    # -- request path ------------------------------------------------------------------

    def submit(self, capture: Capture) -> bool:
        """Queue one capture without blocking. False (and counted) when the queue is full."""
        if not self.config.background_worker_mode:
            self._send_sync(capture)
            return True
        size = capture.approx_bytes
        with self._cond:
            if os.getpid() != self._pid:
                self._after_fork_locked()
            if (
                len(self._queue) >= self.config.max_queue_events
                or self._queued_bytes + size > self.config.max_queue_bytes
            ):
                self._stats["dropped"]["queue_full"] += 1
                full = True
            else:
                full = False
                self._queue.append(capture)
                self._queued_bytes += size
                self._stats["queued"] += 1
                if len(self._queue) == 1 or len(self._queue) >= self.config.buffer_length:
                    self._cond.notify()
                if self._thread is None:
                    self._start_locked()
        if full:
            warn_limited(
                "queue_full", "readme_metrics: queue full (%d events); dropping logs", self.config.max_queue_events
            )
        return not full

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name="readme-metrics-worker", daemon=True)
        self._thread.start()

    def _after_fork_locked(self) -> None:
        # Reached only if the at-fork hook did not run (e.g. os.fork from C code).
        self._reset()

    # -- worker ------------------------------------------------------------------------

    def _take(self) -> list[Capture] | None:
        """Wait for a batch; None when stopping with nothing left."""
        cfg = self.config
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            deadline = time.monotonic() + cfg.flush_interval
            while len(self._queue) < cfg.buffer_length and not self._stopping and not self._flushing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), cfg.max_batch_events))]
            self._queued_bytes -= sum(c.approx_bytes for c in batch)
            self._in_flight += len(batch)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._deliver(batch)
            except Exception:  # never let the worker die
                logger.exception("readme_metrics: unexpected error in the delivery worker")
            finally:
                with self._cond:
                    self._in_flight -= len(batch)
                    self._cond.notify_all()

    def build(self, capture: Capture) -> Log | None:
        """One capture as a log object (redacted, masked); None if it must not be sent."""
        cfg = self.config
        try:
            log = build_log(capture, self.redactor, development=cfg.development_mode, log_body=cfg.log_body)
        except Exception as exc:
            self._stats["dropped"]["build_error"] += 1
            warn_limited("build", "readme_metrics: could not build a log (%s: %s)", type(exc).__name__, exc)
            return None
        if cfg.mask is not None:
            try:
                log = cfg.mask(log)
            except Exception as exc:
                self._stats["dropped"]["mask_error"] += 1
                warn_limited(
                    "mask", "readme_metrics: the mask hook raised %s: %s; log dropped", type(exc).__name__, exc
                )
                return None
            if not isinstance(log, dict):
                self._stats["dropped"]["mask_error"] += 1
                warn_limited(
                    "mask", "readme_metrics: the mask hook returned %s, not a dict; log dropped", type(log).__name__
                )
                return None
        return log

    def _deliver(self, batch: list[Capture]) -> None:
        logs = [log for log in map(self.build, batch) if log is not None]
        if not logs:
            return
        try:
            sent_bytes = self.transport.send(logs)
        except Exception as exc:
            self._stats["batches_failed"] += 1
            self._stats["dropped"]["delivery_error"] += len(logs)
            self._stats["last_error"] = str(exc)
            warn_limited("send", "readme_metrics: could not deliver %d logs: %s", len(logs), exc)
            return
        self._stats["sent"] += len(logs)
        self._stats["batches_sent"] += 1
        self._stats["bytes_sent"] += sent_bytes
        self._stats["last_success"] = time.time()

    def _send_sync(self, capture: Capture) -> None:
        """``background_worker_mode=False``: build and send in the caller's thread."""
        with self._send_lock:
            self._queue.append(capture)
            self._stats["queued"] += 1
            if len(self._queue) < self.config.buffer_length:
                return
            batch = list(self._queue)
            self._queue.clear()
        self._deliver(batch)

    # -- control -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; True if the queue emptied within ``timeout``."""
        if not self.config.background_worker_mode:
            with self._send_lock:
                batch = list(self._queue)
                self._queue.clear()
            if batch:
                self._deliver(batch)
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if os.getpid() != self._pid:
                return True
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight:
                    if self._thread is None or not self._thread.is_alive():
                        if not self._queue:
                            break
                        self._start_locked()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining if remaining is None else min(remaining, 0.1))
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default ``shutdown_timeout``), then stop the worker."""
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        if not self.flush(timeout):
            with self._cond:
                left = len(self._queue)
            if left:
                self._stats["dropped"]["shutdown"] += left
                logger.warning("readme_metrics: %d logs not delivered before the shutdown deadline", left)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.transport.close()

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (see README, "Monitoring the SDK")."""
        with self._cond:
            snapshot = dict(self._stats)
            snapshot["dropped"] = dict(self._stats["dropped"])
            snapshot["waiting"] = len(self._queue) + self._in_flight
        return snapshot


_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def client_for(config: MetricsApiConfig) -> Client:
    """The one client of a configuration (middlewares sharing a config share it)."""
    client = getattr(config, "_client", None)
    if client is None:
        client = Client(config)
        config._client = client  # type: ignore[attr-defined]
    return client


def _close_all() -> None:
    for client in list(_clients):
        if client._pid == os.getpid():
            try:
                client.close()
            except Exception:
                logger.exception("readme_metrics: error while flushing at exit")


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._reset()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
