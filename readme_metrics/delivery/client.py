"""The client of one configuration: the queue, the builder and the sender, put together.

The request path calls :meth:`Client.submit` only: a capture is appended to a bounded
queue (:mod:`~readme_metrics.delivery.queue`) without blocking. The queue's one worker
thread hands each batch of captures here: each becomes the bytes of its log
(:class:`readme_metrics.build.Builder`), and the batch goes to the exporter through the
sender's retries (:mod:`~readme_metrics.delivery.sender`). The counters are
:mod:`~readme_metrics.delivery.stats`'.

Shutdown and fork
    At interpreter exit (``atexit``; gunicorn workers exit this way on SIGTERM), at ASGI
    lifespan shutdown and on :meth:`Client.close`, what is queued is delivered within
    ``shutdown_timeout`` (at exit: every client at once, from one start); what is left
    then is counted as dropped (``shutdown``). A closed client can be used again. In a
    forked child (gunicorn ``--preload``) each client starts afresh: its own worker, its
    own connection, an empty queue and zeroed counters.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from readme_metrics._log import logger, warn_limited
from readme_metrics.build import Builder
from readme_metrics.build.redaction import Redactor
from readme_metrics.capture import Capture
from readme_metrics.delivery.fanout import Fanout, exporter_names, exporters_of
from readme_metrics.delivery.queue import BatchQueue
from readme_metrics.delivery.sender import Sender
from readme_metrics.delivery.stats import Stats
from readme_metrics.exporters.base import Exporter
from readme_metrics.exporters.readme import ReadMeExporter
from readme_metrics.retry import Retry

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig

#: After this many seconds of building the worker pauses for ``YIELD_PAUSE`` seconds, so
#: that a waiting app thread takes the GIL: without it the app's request waits up to the
#: interpreter's switch interval (5 ms) behind the worker. (``time.sleep(0)`` is not
#: enough: the worker often takes the GIL back before the waiting thread wakes up.)
YIELD_AFTER = 0.0005
YIELD_PAUSE = 0.00005


class Client:
    """Delivery for one configuration. ``exporter`` replaces the default
    :class:`~readme_metrics.exporters.ReadMeExporter` (see :mod:`readme_metrics.testing`)."""

    def __init__(self, config: MetricsApiConfig, exporter: Exporter | None = None) -> None:
        self.config = config
        self.counters = Stats()
        self.builder = Builder(
            Redactor.from_config(config),
            development=config.development_mode,
            log_body=config.log_body,
            mask=config.mask,
            repaired=self.counters.repair,
        )
        exporters = [exporter] if exporter is not None else exporters_of(config)
        first = exporters[0]
        # A user's exporter object is kept in a forked child (it reopens what it needs); the
        # default ReadMe exporter is made anew there (a session is not shared across a fork).
        default = exporter is None and not config.exporters and not config.exporter_specs
        self._new_exporter: Callable[[], Exporter] = (
            (lambda: ReadMeExporter.from_config(config)) if default else (lambda: first)
        )
        #: With several exporters, one outbox each (see :mod:`~readme_metrics.delivery.fanout`).
        self.fanout: Fanout | None = Fanout(exporters, config) if len(exporters) > 1 else None
        self.queue: BatchQueue[Capture, bytes] = BatchQueue(
            self._send,
            self._encode,
            max_events=config.max_queue_events,
            max_bytes=config.max_queue_bytes,
            buffer_length=config.buffer_length,
            flush_interval=config.flush_interval,
            max_batch=config.max_batch_events,
        )
        self.sender = Sender(first, config.retry or Retry(), self.counters, self.queue, config.timeout)
        self._sync_lock = threading.Lock()
        self._sync_batch: list[Capture] = []
        self._pid = os.getpid()
        _clients.add(self)

    @property
    def exporter(self) -> Exporter:
        return self.sender.exporter

    def set_exporter(self, exporter: Exporter) -> None:
        """Deliver through ``exporter`` from now on (kept in forked children too)."""
        old = self.sender.exporter
        if self.fanout is not None:  # one exporter from now on
            self.fanout.shutdown()
            self.fanout = None
        self._new_exporter = lambda: exporter
        self.sender.exporter = exporter
        if old is not exporter:
            old.shutdown()

    def _after_fork(self) -> None:
        """In a forked child: fresh queue, counters and connection; nothing inherited."""
        self._pid = os.getpid()
        self.queue.reset()
        self.counters.reset()
        self._sync_lock = threading.Lock()
        self._sync_batch = []
        self.sender.exporter = self._new_exporter()
        if self.fanout is not None:
            self.fanout.reset()

    # -- the request path --------------------------------------------------------------

    def submit(self, capture: Capture) -> bool:
        """Queue one capture without blocking. False (and counted) when the queue is full."""
        if not self.config.background_worker_mode:
            self._submit_sync(capture)
            return True
        if self._pid != os.getpid():
            # Only if the at-fork hook did not run (os.fork from C code). Just after a fork
            # the child has a single thread, so resetting outside any lock is safe.
            self._after_fork()
        if self.queue.put(capture, capture.approx_bytes):
            return True
        warn_limited("queue_full", "readme_metrics: queue full (%d events); dropping logs", self.queue.max_events)
        return False

    def _submit_sync(self, capture: Capture) -> None:
        """``background_worker_mode=False``: build and send in the caller's thread once
        ``buffer_length`` captures wait, one try per batch (a retry pause would stall the
        app's request)."""
        with self._sync_lock:
            self._sync_batch.append(capture)
            self.queue.accepted += 1
            if len(self._sync_batch) < self.config.buffer_length:
                return
            batch, self._sync_batch = self._sync_batch, []
        self._send([log for log, _ in self._encode(batch)], retries=False)

    # -- the worker --------------------------------------------------------------------

    def _encode(self, captures: list[Capture]) -> list[tuple[bytes, int]]:
        """The encoded logs of ``captures`` (with their sizes), those that cannot be built
        counted. Never raises: an unexpected error is logged, and the captures it leaves
        unbuilt are counted as ``internal_error``."""
        logs: list[tuple[bytes, int]] = []
        try:
            encode, drop = self.builder.encode_or_count, self.counters.drop
            mark = time.perf_counter()
            for capture in captures:
                data = encode(capture, drop)
                if data is not None:
                    logs.append((data, len(data)))
                if time.perf_counter() - mark > YIELD_AFTER:  # the app's threads first
                    time.sleep(YIELD_PAUSE)
                    mark = time.perf_counter()
        except Exception as exc:
            logger.exception("readme_metrics: unexpected error while building logs")
            self.counters.gave_up("internal_error", len(captures) - len(logs), f"{type(exc).__name__}: {exc}")
        captures.clear()  # their body copies are in the logs now: free them
        return logs

    def _send(self, logs: list[bytes], *, retries: bool = True) -> None:
        """Send a batch of encoded logs. Never raises (see :meth:`_encode`)."""
        try:
            if self.fanout is None:
                self.sender.send(logs, retries=retries)
            elif retries:
                self.fanout.offer(logs)
            else:
                self.fanout.send_now(logs)
        except Exception as exc:
            logger.exception("readme_metrics: unexpected error while delivering logs")
            self.counters.gave_up("internal_error", len(logs), f"{type(exc).__name__}: {exc}")

    # -- control -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; True if it was all sent (or given up) within
        ``timeout``. Waits for the worker; where no worker can start (late at interpreter
        exit), delivers in the calling thread."""
        if not self.config.background_worker_mode:
            with self._sync_lock:
                batch, self._sync_batch = self._sync_batch, []
            if batch:
                self._send([log for log, _ in self._encode(batch)], retries=False)
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.queue.flush(timeout)
        if self.fanout is not None:
            done = self.fanout.flush(deadline) and done
        return done

    def close(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default ``shutdown_timeout``), then stop the worker.

        Retries stop at the deadline; what is still queued or in flight then is counted as
        dropped (``shutdown``). The whole close keeps to the deadline. The client may be
        used again afterwards.
        """
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self.config.background_worker_mode and not self.begin_close(deadline):
            return
        self._finish_close(deadline, timeout)

    def begin_close(self, deadline: float) -> bool:
        """Start closing (see :meth:`close`); False in a forked child not yet reset."""
        if not self.queue.begin_close(deadline):
            return False
        if self.fanout is not None:
            self.fanout.begin_close(deadline)
        return True

    def _finish_close(self, deadline: float, timeout: float) -> None:
        try:
            if not self.config.background_worker_mode:
                self.flush()
                return
            left, in_flight = self.queue.finish_close(deadline)
            if left:
                self.counters.drop("shutdown", left)
            if self.fanout is not None:
                in_flight += self.fanout.finish_close(deadline)
            if left or in_flight:
                logger.warning(
                    "readme_metrics: %d logs not delivered before the shutdown deadline (%gs)",
                    left + in_flight,
                    timeout,
                )
        finally:
            self.sender.exporter.shutdown()
            if self.fanout is not None and not self.config.background_worker_mode:
                self.fanout.shutdown()  # (with a worker, the fanout's close shut them down)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters; every field is described in docs/delivery.md.

        With several exporters the top-level fields are the first exporter's (what it sent,
        retried, dropped, waits for), plus what was dropped before any exporter got it
        (queue full, build errors); ``exporters`` has every exporter's own."""
        snapshot = self.counters.snapshot()
        queue = self.queue
        waiting, queue_bytes = queue.waiting()
        refused = queue.refused
        dropped: dict[str, int] = snapshot["dropped"]
        if refused:
            dropped["queue_full"] = dropped.get("queue_full", 0) + refused
        waiting += len(self._sync_batch)
        per_exporter: dict[str, dict[str, Any]] = {}
        if self.fanout is not None:
            per_exporter = self.fanout.snapshots()
            first = next(iter(per_exporter.values()))
            for reason, count in first["dropped"].items():
                dropped[reason] = dropped.get(reason, 0) + count
            snapshot.update({key: value for key, value in first.items() if key not in _OWN_FIELDS})
            waiting += first["waiting"]
            queue_bytes += first["queue_bytes"]
        snapshot.update(queued=queue.accepted, waiting=waiting, queue_bytes=queue_bytes)
        if self.fanout is None:  # one exporter: its counters are the top-level ones
            per_exporter = {exporter_names([self.sender.exporter])[0]: {**snapshot, "dropped": dict(dropped)}}
        snapshot["exporters"] = per_exporter
        return snapshot


#: Top-level fields of ``stats()`` that are the client's own, whatever the exporters.
_OWN_FIELDS = frozenset({"dropped", "queued", "waiting", "queue_bytes", "repaired"})


_clients: weakref.WeakSet[Client] = weakref.WeakSet()
_by_config: weakref.WeakKeyDictionary[Any, Client] = weakref.WeakKeyDictionary()
_by_config_lock = threading.Lock()


def client_for(config: MetricsApiConfig) -> Client:
    """The one client of a configuration (middlewares sharing a config share it)."""
    with _by_config_lock:
        client = _by_config.get(config)
        if client is None:
            client = _by_config[config] = Client(config)
        return client


def close_all() -> None:
    """Close every client of this process within one shared deadline (each its own
    ``shutdown_timeout`` from the same start), all flushing at once. Runs at interpreter
    exit; a server that ends its workers otherwise may call it."""
    start = time.monotonic()
    closing: list[tuple[Client, float]] = []
    for client in list(_clients):
        deadline = start + client.config.shutdown_timeout
        try:
            if not client.config.background_worker_mode or client.begin_close(deadline):
                closing.append((client, deadline))
        except Exception:
            logger.exception("readme_metrics: error while flushing at exit")
    for client, deadline in closing:  # every worker flushes meanwhile
        try:
            client._finish_close(deadline, client.config.shutdown_timeout)
        except Exception:
            logger.exception("readme_metrics: error while flushing at exit")


def _after_fork_in_child() -> None:
    global _by_config_lock
    _by_config_lock = threading.Lock()
    for client in list(_clients):
        client._after_fork()


atexit.register(close_all)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
