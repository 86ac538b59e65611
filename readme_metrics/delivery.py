"""Delivery: a bounded queue and one worker thread that turn captures into batches.

The request path calls :meth:`Client.submit` only: a non-blocking append to a queue bounded
by event count (``max_queue_events``) and by bytes (``max_queue_bytes``); a full queue
drops the event and counts it. The worker thread builds the log objects (HAR, redaction,
the user's mask hook), encodes each batch once and posts it to
``{metrics_server}/v1/request`` with one keep-alive ``requests.Session`` (gzip-compressed
when ``compress=True``).

Batches
    A batch leaves as soon as ``buffer_length`` events wait or the oldest waiting event has
    been queued for ``flush_interval`` seconds, carrying whatever else is queued, up to
    ``max_batch_events``. Under load, posts are at least ``MIN_POST_GAP`` (0.2 s) apart
    unless ``max_batch_events`` wait: batches grow, so the number of posts does not.

Failures (see :mod:`readme_metrics.retry`)
    Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff
    and jitter, honouring ``Retry-After``, until the policy's attempts or age run out;
    then the batch is dropped and counted. While a batch is retried the worker holds
    only that batch: later events wait in the bounded queue and leave, in larger
    batches, when the API is back. 401/403 (a bad or blocked ``api_key``) and other 4xx
    are not retried: the batch is dropped and counted, with one rate-limited warning.
    Delivery is at least once: a batch whose answer was lost (a timeout) is sent again.

Shutdown and fork
    At interpreter exit (``atexit``; gunicorn workers exit this way on SIGTERM), at ASGI
    lifespan shutdown and on :meth:`Client.close`, what is queued is flushed within
    ``shutdown_timeout`` seconds (at exit: all clients at once, from one start). A retry
    pause that would outlast that deadline is cut short for a last try; whatever is left
    at the deadline is counted as dropped (``shutdown``). A closed client can be used
    again (a lifespan may run more than once in a process). In a forked child
    (gunicorn ``--preload``) the client starts afresh: its own thread, its own
    connection, an empty queue and zeroed counters.

Self-telemetry
    :meth:`Client.stats` (also ``middleware.stats()``) returns a snapshot of the counters;
    every field is documented in ``docs/delivery.md``.
"""

from __future__ import annotations

import atexit
import base64
import collections
import contextlib
import gzip
import json
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import requests

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the [fast] extra is optional
    _orjson = None  # type: ignore[assignment]

from readme_metrics import _sidecar
from readme_metrics._log import logger, warn_limited
from readme_metrics._version import __version__
from readme_metrics.bodies import fill_late, splice_late
from readme_metrics.capture import Capture
from readme_metrics.har import build_log
from readme_metrics.redaction import Redactor
from readme_metrics.retry import Retry

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig

Log = dict[str, Any]


class Encoded:
    """One log, built and encoded as it arrived (the delivery process does this, see
    :meth:`Client.submit_built`): what is queued is then only its JSON."""

    __slots__ = ("approx_bytes", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.approx_bytes = 1024 + len(data)


#: What the queue holds: captures, or (with a delivery process) captures as frames, or
#: (in the delivery process) encoded logs.
Queued = Capture | _sidecar.RawCapture | Encoded

#: A log object, or its encoding (an :class:`Encoded` log's).
Built = Log | bytes

#: gzip level of compressed uploads: most of level 9's gain on JSON at a fraction of its cost.
GZIP_LEVEL = 5

#: After this many seconds of work the worker pauses for a moment (``time.sleep(0)``, about
#: 50-70 us on Linux), so that a waiting app thread takes the GIL: without it the app's
#: request waits up to the interpreter's switch interval (5 ms) behind the worker.
YIELD_AFTER = 0.001


def _yield_gil(since: float) -> float:
    """Pause if the worker has held on for ``YIELD_AFTER`` since ``since``; the new mark."""
    now = time.perf_counter()
    if now - since < YIELD_AFTER:
        return since
    time.sleep(0)
    return time.perf_counter()


#: Under load, at most one post per this many seconds (unless ``max_batch_events`` wait):
#: a busy API's events leave in a few large posts, not one post per request. An event that
#: arrives after a quiet spell still leaves at once.
MIN_POST_GAP = 0.2

#: A batch built here holds at most this many bytes of captures (their body copies,
#: mostly; in the delivery process, of encoded logs), or one if it alone is larger.
#: Building and encoding hold a batch of captures about four times over (copies, base64,
#: JSON), so this bounds that memory, and the size of one post, whatever
#: ``max_queue_bytes`` lets wait.
BATCH_BYTES = 4 * 1024 * 1024

#: :meth:`Client.stats` waits at most this long for the delivery process's counters.
STATS_WAIT = 0.5

#: With a delivery process, the worker hands captures over at most this often (the
#: process batches them for posting as above): a few hand-overs per second under load.
HAND_GAP = 0.05


#: Of a close's time budget, the last this many seconds (at most a quarter of the budget)
#: are kept for the worker to settle its last batch and exit: posts and retries stop before.
CLOSE_GRACE = 0.25


class DeliveryError(Exception):
    """The metrics API did not accept a batch.

    ``status`` is the HTTP status, or ``None`` when there was no answer (connection
    error, timeout); ``retry_after`` is the raw ``Retry-After`` header, if any.
    """

    def __init__(self, message: str, status: int | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Batch:
    """The JSON encoding of one post's ``count`` logs (made once, reused by retries; the
    log objects themselves are not kept, so that only the encoding is in memory)."""

    __slots__ = ("_gzipped", "body", "count")

    def __init__(self, count: int, body: bytes) -> None:
        self.count = count
        self.body = body
        self._gzipped: bytes | None = None

    def __len__(self) -> int:
        return self.count

    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=GZIP_LEVEL, mtime=0)
        return self._gzipped


class Transport(Protocol):
    """Where batches go. Raises :class:`DeliveryError` when one is not accepted.

    ``readme_metrics.testing.MemoryTransport`` is one for tests; :class:`HttpTransport`
    is the real one.
    """

    def send(self, batch: Batch, timeout: float) -> int:
        """Deliver one batch within ``timeout`` seconds; return the bytes sent."""
        ...

    def close(self) -> None: ...


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON: with ``orjson`` when installed (the ``[fast]`` extra: about ten
    times faster, and it holds the GIL that much less), else with the standard library.

    NaN and the infinities, which JSON cannot hold, are written as ``null`` on both paths
    (as ``orjson`` and JavaScript's ``JSON.stringify`` do): the standard library would
    write ``NaN``, which the API rejects, and with it the whole batch.
    """
    if _orjson is not None:
        try:
            return _orjson.dumps(value, option=_orjson.OPT_NON_STR_KEYS)
        except TypeError:  # what orjson cannot encode, json may (e.g. integers past 64 bits)
            pass
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # rare: a non-finite float (from a mask hook); or a circular value
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (value or key) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_finite(k) if isinstance(k, float) else k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def encode_batch(logs: Sequence[Built]) -> tuple[Batch, int]:
    """A :class:`Batch` of the logs that encode, and how many did not (a mask hook may
    return values JSON cannot hold; only those logs are lost, not their batch).

    Encoded log by log: ``json.dumps`` holds the GIL for the whole call, and one call for a
    batch of hundreds of logs would stall the app's threads for milliseconds.
    """
    parts: list[bytes] = [b"["]
    mark = time.perf_counter()
    for log in logs:
        mark = _yield_gil(mark)
        if type(log) is bytes:  # encoded already
            parts += (log, b",")
            continue
        try:
            parts.append(_dumps(log))
        except (TypeError, ValueError, RecursionError):
            continue
        parts.append(b",")
    kept = (len(parts) - 1) // 2
    parts[-1:] = [b"]"] if kept else [b"[", b"]"]  # the last comma (or the opening) closes
    return Batch(kept, b"".join(parts)), len(logs) - kept  # one copy of the whole


class HttpTransport:
    """POST ``/v1/request`` on the metrics API, Basic auth with the API key."""

    def __init__(self, config: MetricsApiConfig) -> None:
        self.url = f"{config.metrics_server}/v1/request"
        self.compress = config.compress
        token = base64.b64encode(f"{config.api_key}:".encode()).decode("ascii")
        self.headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "User-Agent": f"readme-metrics-python@{__version__}",
        }
        if self.compress:
            self.headers["Content-Encoding"] = "gzip"
        self.session = requests.Session()

    def send(self, batch: Batch, timeout: float) -> int:
        body = batch.gzipped() if self.compress else batch.body
        try:
            response = self.session.post(self.url, data=body, headers=self.headers, timeout=timeout)
        except requests.Timeout as exc:
            raise DeliveryError(f"no answer from {self.url} within {timeout:.3g}s") from exc
        except requests.RequestException as exc:
            raise DeliveryError(f"cannot reach {self.url}: {_short_reason(exc)}") from exc
        if response.status_code >= 300:
            raise DeliveryError(
                f"{self.url} answered {response.status_code}: {response.text[:200]}",
                response.status_code,
                response.headers.get("Retry-After"),
            )
        return len(body)

    def close(self) -> None:
        self.session.close()


def _short_reason(exc: requests.RequestException) -> str:
    """``[Errno 111] Connection refused`` rather than urllib3's paragraph about pools."""
    reason: Any = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    text = str(reason)
    return text.rsplit(": ", 1)[-1] if ": " in text else text or type(exc).__name__


def _new_stats() -> dict[str, Any]:
    return {
        "queued": 0,
        "sent": 0,
        "batches_sent": 0,
        "batches_failed": 0,
        "retried": 0,
        "bytes_sent": 0,
        "dropped": collections.Counter(),
        "last_error": None,
        "last_error_time": None,
        "last_success": None,
    }


class Client:
    """The queue, the worker thread and the counters of one configuration.

    ``transport`` replaces the HTTP transport (see :mod:`readme_metrics.testing`).
    """

    def __init__(self, config: MetricsApiConfig, transport: Transport | None = None) -> None:
        self.config = config
        self.redactor = Redactor.from_config(config)
        # The API key as it appears in encoded JSON: the batch is searched for it once.
        key = self.redactor.api_key
        self._key_json = _dumps(key)[1:-1] if key else None
        self.retry: Retry = config.retry or Retry()
        self._make_transport: Callable[[], Transport] = (
            (lambda: transport) if transport else (lambda: HttpTransport(config))
        )
        # A delivery process is used only with our own HTTP transport (see _sidecar).
        self._own_transport = transport is None
        self._sidecar: _sidecar.Sidecar | None = None
        self._reset()
        _clients.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child."""
        if self._sidecar is not None and self._sidecar.pid != os.getpid():
            self._sidecar.abandon()  # the parent's delivery process stays the parent's
        self._sidecar = None
        self._sidecar_deaths = 0
        self._handed_now = 0
        # A batch waits no longer once this many wait (a full queue must not wait a gap).
        self._full_batch = min(self.config.max_batch_events, self.config.max_queue_events)
        self._hand_mode = self._handing()
        self._pid = os.getpid()
        old = getattr(self, "_cond", None)
        self._cond = threading.Condition(threading.Lock())
        # A worker still waiting on the old state ends (see _take). Never blocks: in a
        # forked child the old lock may be held by a thread that did not come along.
        if old is not None and old.acquire(blocking=False):
            try:
                old.notify_all()
            finally:
                old.release()
        # (capture, its approx_bytes, when it was queued): the size is computed once.
        self._queue: collections.deque[tuple[Queued, int, float]] = collections.deque()
        self._queued_bytes = 0
        self._in_flight = 0
        self._flushing = 0
        self._stopping = False
        self._deadline: float | None = None
        self._closes = 0  # close() calls begun: a batch older than a finished close gives up
        self._thread: threading.Thread | None = None
        self._last_take = float("-inf")
        self.transport = self._make_transport()
        self._stats: dict[str, Any] = _new_stats()

    def set_transport(self, transport: Transport) -> None:
        """Send through ``transport`` from now on (kept in forked children too)."""
        old = self.transport
        self._make_transport = lambda: transport
        self._own_transport = False
        self._hand_mode = False
        self.transport = transport
        # What a delivery process already holds goes where it was going (it closes).
        self._close_sidecar(time.monotonic() + self.config.shutdown_timeout)
        if old is not transport:
            old.close()

    # -- request path ------------------------------------------------------------------

    def submit(self, capture: Capture) -> bool:
        """Queue one capture without blocking. False (and counted) when the queue is full."""
        if not self.config.background_worker_mode:
            self._send_sync(capture)
            return True
        if os.getpid() != self._pid:
            # Only if the at-fork hook did not run (os.fork from C code). Just after a fork
            # the child has a single thread, so resetting outside the lock is safe.
            self._reset()
        item: Queued = capture
        if self._hand_mode:
            # As frames now: the capture is freed at once, the worker only writes bytes.
            with contextlib.suppress(Exception):  # else queued as is, and handled there
                item = _sidecar.RawCapture.of(capture)
        return self._enqueue([item]) == 0

    def submit_built(self, captures: list[_sidecar.RawCapture]) -> int:
        """Build and encode ``captures`` now, and queue their logs (the delivery process's
        reader, as captures arrive); how many were dropped because the queue was full.

        Building as they arrive spreads the work evenly: the worker only joins and posts,
        instead of building a whole batch in one burst before each post, which cost the
        app's latency even with the delivery process at the lowest CPU priority (measured
        in docs/benchmarks.md). A log that cannot be built is counted as queued and
        dropped (as if the worker had built it)."""
        items = [item for item in map(self.encode_one, captures) if item is not None]
        failed = len(captures) - len(items)
        if failed:
            with self._cond:
                self._stats["queued"] += failed
        return self._enqueue(items)

    def _enqueue(self, items: Sequence[Queued]) -> int:
        """Append ``items`` to the bounded queue without blocking; how many did not fit
        (counted as ``queue_full``, one rate-limited warning)."""
        cfg = self.config
        now = time.monotonic()
        dropped = 0
        with self._cond:
            queue = self._queue
            before = len(queue)
            for item in items:
                size = item.approx_bytes
                if len(queue) >= cfg.max_queue_events or self._queued_bytes + size > cfg.max_queue_bytes:
                    dropped += 1
                    continue
                queue.append((item, size, now))
                self._queued_bytes += size
            after = len(queue)
            self._stats["queued"] += after - before
            if dropped:
                self._stats["dropped"]["queue_full"] += dropped
            # Wake the worker only at the sizes it waits for (not at every event).
            if before == 0 < after or before < cfg.buffer_length <= after or before < self._full_batch <= after:
                self._cond.notify_all()
            if self._thread is None and after:
                # No new thread now (at interpreter exit, or out of resources): the events
                # stay queued for the next submit, flush() or the exit flush, which
                # delivers inline when no thread can start.
                with contextlib.suppress(RuntimeError):
                    self._start_locked()
        if dropped:
            warn_limited("queue_full", "readme_metrics: queue full (%d events); dropping logs", cfg.max_queue_events)
        return dropped

    def _start_locked(self) -> None:
        self._stopping = False
        thread = threading.Thread(target=self._run, name="readme-metrics-worker", daemon=True)
        thread.start()
        self._thread = thread

    # -- worker ------------------------------------------------------------------------

    def _take(self) -> list[Queued] | None:
        """Wait for a batch; None when stopping with nothing left, or when this thread no
        longer serves the client: a fork the at-fork hook missed, noticed at submit, gave
        the client fresh state (a new lock and queue, and a worker of their own)."""
        cfg = self.config
        cond = self._cond

        def wait(timeout: float | None = None) -> bool:
            cond.wait(timeout)
            return self._cond is cond

        with cond:
            while not self._queue and not self._stopping:
                if not wait():
                    return None
            if not self._queue:
                if self._thread is threading.current_thread():
                    self._thread = None
                return None
            handing = self._hand_mode
            # flush_interval counts from when the oldest waiting event was queued (with a
            # delivery process, that process waits for it).
            deadline = self._queue[0][2] + cfg.flush_interval
            while not handing and len(self._queue) < cfg.buffer_length and not self._hurry_locked():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if not wait(remaining):
                    return None
            # Under load, let the batch grow: one post (or hand-over) per gap at most.
            gap_end = self._last_take + (HAND_GAP if handing else MIN_POST_GAP)
            while (
                len(self._queue) < self._full_batch
                and (handing or self._queued_bytes < BATCH_BYTES)
                and not self._hurry_locked()
            ):
                remaining = gap_end - time.monotonic()
                if remaining <= 0:
                    break
                if not wait(remaining):
                    return None
            self._last_take = time.monotonic()
            return self._pop_locked()

    def _hurry_locked(self) -> bool:
        """Whether to send what is queued now: stopping, flushing or closing."""
        return self._stopping or self._flushing > 0 or self._deadline is not None

    def _pop_locked(self) -> list[Queued]:
        """The next batch: at most ``max_batch_events``, and, when it is built here (not
        handed to the delivery process), at most ``BATCH_BYTES`` worth of captures, or the
        first alone if it is larger."""
        queue = self._queue
        count = min(len(queue), self.config.max_batch_events)
        if not self._hand_mode:
            total = 0
            for index in range(count):
                total += queue[index][1]
                if total > BATCH_BYTES and index:
                    count = index
                    break
        items = [queue.popleft() for _ in range(count)]
        self._queued_bytes -= sum(size for _, size, _ in items)
        self._in_flight += len(items)
        return [capture for capture, _, _ in items]

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._process(batch)

    def _process(self, batch: list[Queued]) -> None:
        count = len(batch)  # _build_logs empties the list as soon as the logs are built
        self._handed_now = 0
        try:
            self._deliver(batch)
        finally:
            with self._cond:
                self._in_flight -= count - self._handed_now  # handed ones already left
                self._handed_now = 0
                self._cond.notify_all()

    def _chunk_handed(self, count: int) -> None:
        """``count`` events of the batch in flight reached the delivery process: from now
        on they are its to count (``stats()`` must not count them twice)."""
        with self._cond:
            self._in_flight -= count
            self._handed_now += count

    def build(self, capture: Capture | _sidecar.RawCapture, late: list[bytes] | None = None) -> Log | None:
        """One capture as a log object (redacted, masked); None if it must not be sent.
        ``late``: large binary bodies go there, to be base64-encoded as the log is encoded
        (:func:`readme_metrics.bodies.splice_late`; only without a mask hook)."""
        cfg = self.config
        try:
            if isinstance(capture, _sidecar.RawCapture):  # in the delivery process: decoded here
                capture = capture.decode()
            log = build_log(
                capture,
                self.redactor,
                development=cfg.development_mode,
                log_body=cfg.log_body,
                late=late if cfg.mask is None else None,
            )
        except Exception as exc:
            self._count_dropped("build_error", 1)
            warn_limited("build", "readme_metrics: could not build a log (%s: %s)", type(exc).__name__, exc)
            return None
        if cfg.mask is not None:
            try:
                log = cfg.mask(log)
            except Exception as exc:
                self._count_dropped("mask_error", 1)
                warn_limited(
                    "mask", "readme_metrics: the mask hook raised %s: %s; log dropped", type(exc).__name__, exc
                )
                return None
            if not isinstance(log, dict):
                self._count_dropped("mask_error", 1)
                warn_limited(
                    "mask", "readme_metrics: the mask hook returned %s, not a dict; log dropped", type(log).__name__
                )
                return None
        return log

    def encode_one(self, capture: Capture | _sidecar.RawCapture) -> Encoded | None:
        """One capture's log, built and encoded (the API key scrubbed if it is in it); None
        if it cannot be (counted: ``build_error`` or ``encode_error``). A large binary body
        is base64-encoded straight into the encoding (:func:`splice_late`): its base64
        never exists as text too."""
        late: list[bytes] = []
        log = self.build(capture, late)
        if log is None:
            return None
        try:
            data = _dumps(log)
            if self._key_json is not None and self._key_json in data:
                fill_late(log, late)  # rare: the whole log is scrubbed, as any other
                data = _dumps(self.redactor.scrub(log))
            if late:
                data = splice_late(data, late)
        except (TypeError, ValueError, RecursionError):
            self._count_dropped("encode_error", 1)
            return None
        return Encoded(data)

    def _build_logs(self, captures: list[Queued]) -> list[Built]:
        """The log objects of ``captures`` (those that cannot be built are counted)."""
        logs: list[Built] = []
        mark = time.perf_counter()
        for capture in captures:
            if isinstance(capture, Encoded):
                logs.append(capture.data)
                continue
            log = self.build(capture)
            if log is not None:
                logs.append(log)
            mark = _yield_gil(mark)  # the app's threads first: a batch is built in short slices
        captures.clear()  # their body copies are in the logs now: free them before encoding
        return logs

    def _encode(self, logs: list[Built]) -> Batch | None:
        """The batch of ``logs`` (those that cannot be encoded are counted); None if empty."""
        batch, unencodable = encode_batch(logs)
        # Logs encoded as they arrived were searched for the key then (encode_one).
        searched = all(type(log) is bytes for log in logs)
        if self._key_json is not None and not searched and self._key_json in batch.body:
            # Rare: the API key is somewhere in the batch. Scrub every log and encode again.
            batch, unencodable = encode_batch(
                [self.redactor.scrub(json.loads(log) if type(log) is bytes else log) for log in logs]
            )
        if unencodable:
            self._count_dropped("encode_error", unencodable)
            warn_limited("encode", "readme_metrics: %d logs are not JSON-serializable (mask hook?)", unencodable)
        return batch if len(batch) else None

    # -- the delivery process (see readme_metrics._sidecar) ---------------------------

    def _handing(self) -> bool:
        """Whether captures go to a delivery process (else: built and sent here)."""
        cfg = self.config
        return (
            self._own_transport
            and cfg.delivery_process
            and cfg.background_worker_mode
            and cfg.mask is None
            and (cfg.retry is None or type(cfg.retry) is Retry)  # a subclass is the app's code
            and self._sidecar_deaths < _sidecar.MAX_DEATHS
            and _sidecar.usable_executable() is not None
        )

    def _live_sidecar(self) -> tuple[_sidecar.Sidecar | None, int]:
        """The running delivery process, or None; a dead one is let go first (what it held
        counted, a warning logged), and the events it lost are returned with it."""
        sidecar = self._sidecar
        if sidecar is None or not sidecar.closed:
            return sidecar, 0
        return None, self._sidecar_ended(died=True)

    def _hand(self, captures: list[Queued]) -> list[Queued]:
        """Hand ``captures`` to the delivery process (started if need be); those it did
        not take (it could not start, or died: counted, warned), for this process."""
        sidecar, _ = self._live_sidecar()
        if sidecar is None and not self._hand_mode:  # that was its last death
            return captures
        if sidecar is None:
            executable = _sidecar.usable_executable()
            try:
                if executable is None:
                    raise OSError("no Python executable")
                sidecar = _sidecar.Sidecar(self.config, executable)
            except Exception as exc:  # no process, no thread at exit, the options cannot be sent...
                self._hand_mode = False  # for good in this process (a forked child tries again)
                warn_limited(
                    "sidecar",
                    "readme_metrics: cannot start the delivery process (%s); delivering from the app's process",
                    exc,
                )
                return captures
            self._sidecar = sidecar
        raws: list[_sidecar.RawCapture] = []
        kept: list[Queued] = []  # what cannot be made a frame: built here (with its error)
        for capture in captures:
            if isinstance(capture, _sidecar.RawCapture):
                raws.append(capture)
                continue
            if isinstance(capture, Encoded):  # never here (only the delivery process encodes)
                kept.append(capture)
                continue
            try:
                raws.append(_sidecar.RawCapture.of(capture))
            except Exception:
                kept.append(capture)
        try:
            sidecar.hand(raws, self._chunk_handed)
        except _sidecar.SidecarGoneError as exc:
            self._sidecar_ended(died=True)
            return kept + list(raws[exc.handed :])
        return kept

    def _sidecar_ended(self, *, died: bool, timeout: float = 1.0) -> int:
        """Fold the delivery process's last counters into ours and let it go; the events
        it held that are lost. ``died``: it ended on its own (they are counted as
        ``delivery_process_died``, and a warning logged)."""
        with self._cond:
            sidecar = self._sidecar
            if sidecar is None or sidecar.ending:  # another thread is letting it go
                return 0
            sidecar.ending = True
        sidecar.end(timeout)  # stats() goes on showing its counters meanwhile
        lost = sidecar.unsettled()
        with self._cond:  # its last counters become ours at the moment it goes
            self._sidecar = None
            _sidecar.merge_report(self._stats, sidecar.report)
            if lost > 0:
                self._stats["dropped"]["shutdown" if not died else "delivery_process_died"] += lost
        if died:
            self._sidecar_deaths += 1
            self._hand_mode = self._handing()
            warn_limited(
                "sidecar_died",
                "readme_metrics: the delivery process exited (code %s); %d logs lost",
                sidecar.proc.returncode,
                max(lost, 0),
            )
            if self._sidecar_deaths == _sidecar.MAX_DEATHS:
                logger.warning(
                    "readme_metrics: the delivery process died %d times; delivering from the app's process from now on",
                    self._sidecar_deaths,
                )
        return max(lost, 0)

    def _close_sidecar(self, deadline: float) -> None:
        """Ask the delivery process to close within ``deadline``, and wait for it."""
        self._await_sidecar_close(self._ask_sidecar_to_close(deadline), deadline)

    def _ask_sidecar_to_close(self, deadline: float) -> int | None:
        """Tell the delivery process to close by ``deadline`` (no wait); the request's
        number, or None when there is no delivery process to ask."""
        sidecar, _ = self._live_sidecar()
        if sidecar is None:
            return None
        try:  # its close must end, its last batch counted (SETTLE), before our deadline
            return sidecar.request(b"X", max(0.0, deadline - time.monotonic() - _sidecar.SETTLE - 0.1))
        except _sidecar.SidecarGoneError:
            return None

    def _await_sidecar_close(self, seq: int | None, deadline: float) -> None:
        """Wait (to ``deadline``, and the child's moment to count a batch cut short) for
        the delivery process asked to close by request ``seq``; then let it go."""
        sidecar = self._sidecar
        if sidecar is None:
            return
        answer = None if seq is None else sidecar.answer(seq, deadline)
        died = answer is None and sidecar.closed  # it ended without answering: killed
        self._sidecar_ended(died=died, timeout=max(0.05, deadline - time.monotonic()))
        if answer is None and not died:
            logger.warning("readme_metrics: the delivery process did not close in time")

    def _deliver(self, captures: list[Queued], *, retries: bool = True) -> None:
        """Build, encode and send one batch, retrying as the policy says (``retries``);
        count what becomes of every event. Never raises: an unexpected error is logged and
        the events it leaves unsettled are counted as ``dropped["internal_error"]``.
        With a delivery process, the captures are handed to it instead."""
        unsettled = len(captures)
        try:
            if retries and self._hand_mode:
                captures = self._hand(captures)
                unsettled = len(captures)
                if not captures:
                    return
            else:
                self._live_sidecar()  # one that died while idle is let go (and counted)
            logs = self._build_logs(captures)
            unsettled = len(logs)
            batch = self._encode(logs) if logs else None
            logs.clear()  # encoded: only the encoding is kept while posting
            if batch is None:
                return
            unsettled = len(batch)
            self._send(batch, retries)
        except Exception as exc:
            logger.exception("readme_metrics: unexpected error while delivering logs")
            self._give_up(unsettled, "internal_error", f"{type(exc).__name__}: {exc}", warn=False)

    def _send(self, batch: Batch, retries: bool) -> None:
        """Post ``batch``, retrying as the policy says; count what becomes of it."""
        closes = self._closes
        policy = self.retry
        first_try = time.monotonic()
        attempt = 0
        last_try = not retries
        while True:
            attempt += 1
            timeout = self._attempt_timeout()
            if timeout <= 0:
                self._give_up(len(batch), "shutdown", "shutdown deadline reached")
                return
            if attempt > 1:
                with self._cond:
                    self._stats["retried"] += 1
            try:
                sent_bytes = self.transport.send(batch, timeout)
            except DeliveryError as exc:
                error: DeliveryError = exc
            except Exception as exc:  # a custom transport's bug: not worth retrying
                self._give_up(len(batch), "transport_error", f"{type(exc).__name__}: {exc}")
                return
            else:
                self._succeeded(batch, sent_bytes)
                return
            status = error.status
            if status in (401, 403):
                self._give_up(len(batch), "unauthorized", str(error), warn=False)
                warn_limited(
                    "unauthorized",
                    "readme_metrics: the metrics API refused the API key (HTTP %d): check `api_key` in "
                    "MetricsApiConfig (the key is wrong, revoked or blocked); logs are dropped until it is fixed",
                    status,
                    every=300.0,
                )
                return
            if not policy.is_retryable(status):
                self._give_up(len(batch), "rejected", str(error))
                return
            if last_try:
                self._give_up(len(batch), "shutdown" if retries else "delivery_error", str(error))
                return
            if attempt >= policy.attempts:
                self._give_up(len(batch), "retries_exhausted", f"{error} (after {attempt} tries)")
                return
            pause = policy.wait(attempt, error.retry_after)
            if time.monotonic() + pause - first_try > policy.max_age:
                self._give_up(len(batch), "too_old", f"{error} (retries would exceed max_age={policy.max_age:g}s)")
                return
            self._note_failure(str(error))
            warn_limited(
                "retry",
                "readme_metrics: the metrics API did not take %d logs (%s); retrying in %.1fs",
                len(batch),
                error,
                pause,
            )
            outcome = self._pause(pause, closes)
            if outcome == "stop":
                self._give_up(len(batch), "shutdown", f"{error} (shutdown deadline reached)")
                return
            last_try = outcome == "last"

    def _attempt_timeout(self) -> float:
        """``timeout``, cut to what is left before the shutdown deadline, if one is set."""
        timeout = float(self.config.timeout)
        deadline = self._deadline
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        return timeout

    def _pause(self, seconds: float, closes: int) -> str:
        """Wait before a retry: "go" when the pause is over, "last" when a shutdown
        deadline falls before its end (try once more now), "stop" when closed (the worker
        is stopping, or a close begun after ``closes`` has ended while the batch waited:
        that close counted the batch as not delivered)."""
        end = time.monotonic() + seconds
        with self._cond:
            while True:
                if self._stopping or (self._closes != closes and self._deadline is None):
                    return "stop"
                if self._deadline is not None and end > self._deadline:
                    return "last"
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return "go"
                self._cond.wait(remaining)

    def _succeeded(self, batch: Batch, sent_bytes: int) -> None:
        with self._cond:
            stats = self._stats
            stats["sent"] += len(batch)
            stats["batches_sent"] += 1
            stats["bytes_sent"] += sent_bytes
            stats["last_success"] = time.time()

    def _note_failure(self, message: str) -> None:
        with self._cond:
            self._stats["last_error"] = message
            self._stats["last_error_time"] = time.time()

    def _count_dropped(self, reason: str, count: int) -> None:
        with self._cond:
            self._stats["dropped"][reason] += count

    def _give_up(self, count: int, reason: str, message: str, *, warn: bool = True) -> None:
        """Count a batch of ``count`` events as given up for ``reason``; warn (rate-limited)
        unless the caller says it more precisely itself."""
        with self._cond:
            stats = self._stats
            stats["batches_failed"] += 1
            stats["dropped"][reason] += count
            stats["last_error"] = message
            stats["last_error_time"] = time.time()
        if warn:
            warn_limited(
                "dropped:" + reason,
                "readme_metrics: %d logs dropped (%s): %s",
                count,
                reason.replace("_", " "),
                message,
            )

    def _send_sync(self, capture: Capture) -> None:
        """``background_worker_mode=False``: build and send in the caller's thread, one
        try per batch (a retry pause would stall the app's request)."""
        with self._cond:
            self._queue.append((capture, 0, 0.0))
            self._stats["queued"] += 1
            if len(self._queue) < self.config.buffer_length:
                return
            batch = self._take_all_locked()
        self._deliver(batch, retries=False)

    def _take_all_locked(self) -> list[Queued]:
        """Empty the queue (synchronous mode); its captures."""
        captures = [capture for capture, _, _ in self._queue]
        self._queue.clear()
        self._queued_bytes = 0
        return captures

    # -- control -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; True if the queue emptied within ``timeout``.

        Waits for the worker; if there is no worker (or it cannot be started, as at a
        late stage of interpreter exit), delivers in the calling thread. With a delivery
        process, waits for it to send what it was handed too.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._flush_here(timeout):
            return False
        if self._sidecar is not None and self._sidecar.pid != os.getpid():
            return True
        sidecar, lost = self._live_sidecar()
        if sidecar is None:  # none, or it died: the flush failed if it held events
            return lost == 0
        try:
            answer = sidecar.ask(b"F", 3600.0 if deadline is None else deadline - time.monotonic())
        except _sidecar.SidecarGoneError:
            return False
        return bool(answer)

    def _flush_here(self, timeout: float | None) -> bool:
        """Empty this process's queue within ``timeout``: sent, or handed to the delivery
        process."""
        if not self.config.background_worker_mode:
            with self._cond:
                batch = self._take_all_locked()
            if batch:
                self._deliver(batch, retries=False)
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if os.getpid() != self._pid:
                return True
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    if self._queue and (self._thread is None or not self._thread.is_alive()):
                        try:
                            self._start_locked()
                        except RuntimeError:  # no new threads at interpreter shutdown
                            self._thread = None
                            self._drain_inline_locked(deadline)
                            continue
                    self._cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            finally:
                self._flushing -= 1
        return True

    def _drain_inline_locked(self, deadline: float | None) -> None:
        """Deliver the queue in this thread (the lock is released while sending)."""
        while self._queue and (deadline is None or time.monotonic() < deadline):
            batch = self._pop_locked()
            self._cond.release()
            try:
                self._process(batch)
            finally:
                self._cond.acquire()

    def close(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default ``shutdown_timeout``), then stop the worker.

        Retries stop at the deadline; what is still queued or in flight then is counted
        as dropped (``shutdown``). The whole close, the worker's exit included, keeps to
        the deadline. The client may be used again afterwards: an event submitted later
        is delivered as usual, retries included (by the same worker, or a new one).
        """
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self._begin_close(deadline):
            self._finish_close(deadline, timeout)

    def _begin_close(self, deadline: float) -> bool:
        """Start closing: the worker sends what is queued at once, each post and retry
        pause cut to end ``CLOSE_GRACE`` before ``deadline``. False in a forked child that
        inherited this client before its reset."""
        with self._cond:
            if os.getpid() != self._pid:
                return False
            self._closes += 1
            self._deadline = deadline - min(CLOSE_GRACE, max(0.0, deadline - time.monotonic()) / 4)
            self._cond.notify_all()
        return True

    def _finish_close(self, deadline: float, timeout: float) -> None:
        """Wait for the flush begun by :meth:`_begin_close`; count and report what is left
        at the deadline; stop the worker, close the delivery process and the transport;
        ready for reuse."""
        seq = None
        try:
            seq = self._stop_here(deadline, timeout)
        finally:
            self._end_close(seq, deadline)

    def _stop_here(self, deadline: float, timeout: float) -> int | None:
        """The first half of a close: this process's queue flushed (or counted at the
        deadline), the worker stopped, the delivery process told to close (no wait: at
        exit, every client's delivery process closes at the same time); the number of
        that request."""
        try:
            send_deadline = self._deadline if self._deadline is not None else deadline
            # Only this process's queue: a delivery process gets the rest of the time to close.
            if not self._flush_here(max(0.0, send_deadline - time.monotonic())):
                with self._cond:
                    left = len(self._queue)
                    self._queue.clear()
                    self._queued_bytes = 0
                    if left:
                        self._stats["dropped"]["shutdown"] += left
                    self._stopping = True
                    self._cond.notify_all()
                    # The batch in flight ends by the send deadline (its timeout was cut to
                    # it, a retry pause ends at once): the grace lets the worker count it.
                    while self._in_flight and (remaining := deadline - time.monotonic()) > 0:
                        self._cond.wait(remaining)
                    in_flight = self._in_flight
                logger.warning(
                    "readme_metrics: %d logs not delivered before the shutdown deadline (%gs)",
                    left + in_flight,
                    timeout,
                )
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))  # an idle worker exits at once
        return self._ask_sidecar_to_close(deadline)

    def _end_close(self, seq: int | None, deadline: float) -> None:
        """The second half: the delivery process's last report awaited, the transport
        closed, the client ready for reuse."""
        try:
            self._await_sidecar_close(seq, deadline)
        finally:
            self.transport.close()
            with self._cond:
                # Ready for reuse: a worker that did not exit in time goes on serving; else
                # the next submit starts a new one.
                self._stopping = False
                self._deadline = None
                self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters; every field is described in docs/delivery.md.

        With a delivery process, its counters are asked for (a round trip through the
        pipe, under a millisecond when it is idle; at most ``STATS_WAIT`` seconds, then
        its last report, at most ``REPORT_EVERY`` old, is used)."""
        sidecar = self._sidecar
        if sidecar is not None and not sidecar.closed and sidecar.pid == os.getpid():
            with contextlib.suppress(_sidecar.SidecarGoneError):
                sidecar.ask(b"Q", 0.0, wait=STATS_WAIT)
        with self._cond:
            snapshot = dict(self._stats)
            dropped = snapshot["dropped"] = collections.Counter(self._stats["dropped"])
            snapshot["waiting"] = len(self._queue) + self._in_flight
            snapshot["queue_bytes"] = self._queued_bytes
            sidecar = self._sidecar
            if sidecar is not None:
                _sidecar.merge_report(snapshot, sidecar.report)
                snapshot["waiting"] += sidecar.unsettled()
        snapshot["dropped"] = dict(dropped)
        snapshot["delivery_process"] = sidecar.proc.pid if sidecar is not None and not sidecar.closed else None
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
    """At interpreter exit: close every client of this process within one shared
    deadline (each its own ``shutdown_timeout`` from the same start), all flushing at once."""
    start = time.monotonic()
    closing: list[tuple[Client, float]] = []
    for client in list(_clients):
        deadline = start + client.config.shutdown_timeout
        if client._pid == os.getpid() and client._begin_close(deadline):
            closing.append((client, deadline))
    asked: list[tuple[Client, float, int | None]] = []
    for client, deadline in closing:
        seq = None
        try:
            seq = client._stop_here(deadline, client.config.shutdown_timeout)
        except Exception:
            logger.exception("readme_metrics: error while flushing at exit")
        asked.append((client, deadline, seq))
    for client, deadline, seq in asked:  # every delivery process closes meanwhile
        try:
            client._end_close(seq, deadline)
        except Exception:
            logger.exception("readme_metrics: error while flushing at exit")


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._reset()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
