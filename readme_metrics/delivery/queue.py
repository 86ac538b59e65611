"""A bounded queue and the one worker thread that empties it: items are prepared a few at
a time as they arrive, and handed over in batches.

It knows nothing of what it holds (captures, for the client) nor of where batches go. The
request path calls :meth:`BatchQueue.put` only: a non-blocking append, refused (False)
when ``max_events`` items or ``max_bytes`` bytes already wait. The worker does two things:

Prepare, paced
    ``prepare`` turns queued items into what is handed over (the client builds and encodes
    logs there). It gets at most ``chunk`` items at a time, at most one chunk per ``pace``
    seconds unless a full chunk waits: the work is spread evenly over time instead of done
    in one burst before each batch. In a process whose threads share one interpreter lock,
    a burst of tens of milliseconds is tens of milliseconds of the app's latency.
Hand over, in batches
    ``handler`` gets the prepared items as soon as ``buffer_length`` of them are ready, or
    the oldest has waited ``flush_interval`` seconds since it was queued, up to
    ``max_batch`` items and ``batch_bytes`` bytes; under load at most one batch per
    ``min_gap`` seconds unless a full batch waits: batches grow, the number of posts does
    not.
Flush and close
    :meth:`flush` waits until nothing is queued, ready or in the worker's hands.
    :meth:`begin_close` sets a deadline: the worker prepares and hands over what waits at
    once, and the :meth:`attempt_timeout` and :meth:`pause` it offers to the handler's
    retries are cut to it; :meth:`finish_close` waits for it, stops the worker and says
    what was left. The queue can be used again after a close. In a forked child (gunicorn
    ``--preload``) the owner calls :meth:`reset`: an empty queue, a new lock, its own worker.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")

#: Under load, at most one batch per this many seconds (unless ``max_batch`` wait).
MIN_POST_GAP = 0.2

#: A batch (and a chunk being prepared) holds at most this many bytes, or one item alone
#: if it is larger: this bounds the memory of preparing and the size of a post, whatever
#: ``max_bytes`` lets wait.
BATCH_BYTES = 4 * 1024 * 1024

#: Items prepared at a time, and at most one chunk per ``PACE`` seconds unless a whole
#: chunk waits (a backlog is prepared without pauses). Measured under uvicorn at 4,000
#: requests/s (docs/benchmarks.md): a 2 ms pace cost the worker 33-38 µs of CPU per log
#: (its wake-ups, and the GIL handed back and forth), 10 ms 23-27 µs; bursts every 0.2 s
#: cost as little but added 6-10 ms to the app's p99.
CHUNK = 64
PACE = 0.01

#: Of a close's time budget, the last this many seconds (at most a quarter of the budget)
#: are kept for the worker to settle its last batch and exit: posts and retries stop before.
CLOSE_GRACE = 0.25

#: What the worker does next: prepare these items, or hand over this batch.
_PREPARE, _HAND = "prepare", "hand"


class Batcher(Generic[T, U]):
    """A bounded queue of items (each with its size in bytes) and the worker thread that
    prepares them and hands them over in batches. :class:`BatchQueue` adds flush and close."""

    def __init__(
        self,
        handler: Callable[[list[U]], None],
        prepare: Callable[[list[T]], list[tuple[U, int]]],
        *,
        max_events: int,
        max_bytes: int,
        buffer_length: int = 1,
        flush_interval: float = 1.0,
        max_batch: int = 500,
        batch_bytes: int = BATCH_BYTES,
        min_gap: float = MIN_POST_GAP,
        chunk: int = CHUNK,
        pace: float = PACE,
        name: str = "readme-metrics-worker",
    ) -> None:
        self.handler = handler
        self.prepare = prepare
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.buffer_length = buffer_length
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.batch_bytes = batch_bytes
        self.min_gap = min_gap
        self.chunk = chunk
        self.pace = pace
        self.name = name
        # A batch waits no longer once this many are ready (a full queue must not wait a gap).
        self._full = min(max_batch, max_events)
        self.reset()

    def reset(self) -> None:
        """Fresh state: at construction, and in a forked child."""
        old: threading.Condition | None = getattr(self, "_cond", None)
        self._cond = threading.Condition(threading.Lock())
        # A worker still waiting on the old state ends (see _next). Never blocks: in a
        # forked child the old lock may be held by a thread that did not come along.
        if old is not None and old.acquire(blocking=False):
            try:
                old.notify_all()
            finally:
                old.release()
        self._pid = os.getpid()
        self._items: collections.deque[tuple[T, int, float]] = collections.deque()
        self._bytes = 0  # of queued items and of prepared ones not yet handed over
        self._ready: list[tuple[U, int]] = []
        self._ready_bytes = 0
        self._ready_since = 0.0  # when the oldest ready item was queued
        self._prepared_since = 0.0  # when the oldest item of the chunk being prepared was
        self._in_flight = 0  # items being prepared, or in the batch being handed over
        self._wake_at = 1  # the queue length at which a put wakes the worker
        self._next_prepare = float("-inf")
        self._last_hand = float("-inf")
        self._flushing = 0
        self._stopping = False
        self._deadline: float | None = None
        self._closes = 0  # close() calls begun: a batch older than a finished close gives up
        self._thread: threading.Thread | None = None
        #: Items accepted and refused (full) since the reset.
        self.accepted = 0
        self.refused = 0

    # -- the request path --------------------------------------------------------------

    def put(self, item: T, size: int) -> bool:
        """Append ``item`` (of ``size`` bytes) without blocking; False when full."""
        now = time.monotonic()
        cond = self._cond
        with cond:
            items = self._items
            count = len(items)
            if count >= self.max_events or self._bytes + size > self.max_bytes:
                self.refused += 1
                return False
            items.append((item, size, now))
            self._bytes += size
            self.accepted += 1
            # Wake the worker only at the length it waits for (not at every item).
            if count + 1 == self._wake_at:
                cond.notify_all()
            if self._thread is None:
                # No new thread now (at interpreter exit, or out of resources): the items
                # stay queued for the next put, a flush or the exit flush, which runs the
                # worker's steps in its own thread when no thread can start.
                with contextlib.suppress(RuntimeError):
                    self._start_locked()
        return True

    def _start_locked(self) -> None:
        self._stopping = False
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        thread.start()
        self._thread = thread

    # -- the worker --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            step = self._next()
            if step is None:
                return
            self._do(step)

    def _do(self, step: tuple[str, list[T] | list[U]]) -> None:
        kind, work = step
        count = len(work)
        if kind == _PREPARE:
            ready: list[tuple[U, int]] = []
            try:
                ready = self.prepare(work)  # type: ignore[arg-type]
            finally:
                size = sum(size for _, size in ready)
                with self._cond:
                    if not self._ready and ready:
                        self._ready_since = self._prepared_since
                    self._ready += ready
                    self._ready_bytes += size
                    self._bytes += size
                    self._in_flight -= count
                    self._cond.notify_all()
            return
        try:
            self.handler(work)  # type: ignore[arg-type]
        finally:
            with self._cond:
                self._in_flight -= count
                self._cond.notify_all()

    def _next(self) -> tuple[str, list[T] | list[U]] | None:
        """Wait for the next step; None when stopping with nothing left, or when this
        thread no longer serves the queue (a reset after a fork gave it fresh state)."""
        cond = self._cond
        with cond:
            while self._cond is cond:
                now = time.monotonic()
                hurry = self._hurry_locked()
                hand_at = self._hand_at_locked(now, hurry)
                # In a hurry, what is queued is prepared first: it leaves in full batches.
                fill = hurry and self._items and len(self._ready) < self._full and self._ready_bytes < self.batch_bytes
                if hand_at is not None and hand_at <= now and not fill:
                    return _HAND, self._pop_ready_locked(now)
                if self._items and (hurry or now >= self._next_prepare or len(self._items) >= self.chunk):
                    self._next_prepare = now + self.pace
                    return _PREPARE, self._pop_items_locked()
                if not self._items and not self._ready and self._stopping:
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return None
                wake = [t for t in (hand_at, self._next_prepare if self._items else None) if t is not None]
                self._wake_at = self.chunk if self._items else 1
                cond.wait(min(wake) - now if wake else None)
                self._wake_at = 1
            return None

    def _hurry_locked(self) -> bool:
        """Whether to prepare and hand over what waits now: stopping, flushing or closing."""
        return self._stopping or self._flushing > 0 or self._deadline is not None

    def _hand_at_locked(self, now: float, hurry: bool) -> float | None:
        """When the ready items are due to be handed over (None: none are ready)."""
        if not self._ready:
            return None
        if hurry or len(self._ready) >= self._full or self._ready_bytes >= self.batch_bytes:
            return now
        start = now if len(self._ready) >= self.buffer_length else self._ready_since + self.flush_interval
        return max(start, self._last_hand + self.min_gap)

    def _pop_items_locked(self) -> list[T]:
        """The next chunk to prepare: at most ``chunk`` items and ``batch_bytes`` bytes."""
        items = self._items
        count = min(len(items), self.chunk)
        total = 0
        for index in range(count):
            total += items[index][1]
            if total > self.batch_bytes and index:
                count = index
                break
        self._prepared_since = items[0][2]
        taken = [items.popleft() for _ in range(count)]
        self._bytes -= sum(size for _, size, _ in taken)
        self._in_flight += count
        return [item for item, _, _ in taken]

    def _pop_ready_locked(self, now: float) -> list[U]:
        """The next batch: at most ``max_batch`` items and ``batch_bytes`` bytes (or the
        first alone if it is larger)."""
        ready = self._ready
        count = min(len(ready), self.max_batch)
        total = 0
        for index in range(count):
            total += ready[index][1]
            if total > self.batch_bytes and index:
                count = index
                break
        batch, self._ready = ready[:count], ready[count:]
        size = sum(size for _, size in batch)
        self._bytes -= size
        self._ready_bytes -= size
        self._in_flight += count
        self._last_hand = now
        return [item for item, _ in batch]


class BatchQueue(Batcher[T, U]):
    """A :class:`Batcher` that can be flushed and closed, and that tells the handler's
    retries what a close imposes (see :class:`readme_metrics.delivery.sender.Deadlines`)."""

    # -- what the handler's retries ask ------------------------------------------------

    @property
    def closes(self) -> int:
        """How many closes have begun (a retry remembers it; see :meth:`pause`)."""
        return self._closes

    def attempt_timeout(self, timeout: float) -> float:
        """``timeout``, cut to what is left before the close deadline, if one is set."""
        deadline = self._deadline
        return timeout if deadline is None else min(timeout, deadline - time.monotonic())

    def pause(self, seconds: float, closes: int) -> str:
        """Wait before a retry: "go" when the pause is over, "last" when a close deadline
        falls before its end (try once more now), "stop" when stopped (or when a close
        begun after ``closes`` has ended while the batch waited: that close counted the
        batch as not delivered)."""
        end = time.monotonic() + seconds
        cond = self._cond
        with cond:
            while True:
                if self._stopping or (self._closes != closes and self._deadline is None):
                    return "stop"
                if self._deadline is not None and end > self._deadline:
                    return "last"
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return "go"
                cond.wait(remaining)

    # -- control -----------------------------------------------------------------------

    def waiting(self) -> tuple[int, int]:
        """(items queued, ready or in the worker's hands; bytes queued or ready)."""
        with self._cond:
            return len(self._items) + len(self._ready) + self._in_flight, self._bytes

    @property
    def worker(self) -> threading.Thread | None:
        """The worker thread, if one runs."""
        return self._thread

    def flush(self, timeout: float | None = None) -> bool:
        """Prepare and hand over everything queued now; True once nothing is left, within
        ``timeout``. Without a worker (none can start, as late at interpreter exit) the
        worker's steps run in the calling thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = self._cond
        with cond:
            if os.getpid() != self._pid:
                return True
            self._flushing += 1
            cond.notify_all()
            try:
                while self._items or self._ready or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    if (self._items or self._ready) and (self._thread is None or not self._thread.is_alive()):
                        try:
                            self._start_locked()
                        except RuntimeError:  # no new threads at interpreter shutdown
                            self._thread = None
                            self._drain_inline_locked(deadline)
                            continue
                    cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            finally:
                self._flushing -= 1
        return True

    def _drain_inline_locked(self, deadline: float | None) -> None:
        """The worker's steps in this thread until nothing is left (lock released meanwhile)."""
        while (self._items or self._ready) and (deadline is None or time.monotonic() < deadline):
            step: tuple[str, list[T] | list[U]]
            if self._items:
                step = (_PREPARE, self._pop_items_locked())
            else:
                step = (_HAND, self._pop_ready_locked(time.monotonic()))
            self._cond.release()
            try:
                self._do(step)
            finally:
                self._cond.acquire()

    def begin_close(self, deadline: float) -> bool:
        """Start closing: the worker prepares and hands over what waits at once; posts and
        retry pauses are cut to end ``CLOSE_GRACE`` before ``deadline``. False in a forked
        child that inherited this queue before its reset."""
        with self._cond:
            if os.getpid() != self._pid:
                return False
            self._closes += 1
            self._deadline = deadline - min(CLOSE_GRACE, max(0.0, deadline - time.monotonic()) / 4)
            self._cond.notify_all()
        return True

    def finish_close(self, deadline: float) -> tuple[int, int]:
        """Wait (until ``deadline``) for the close begun by :meth:`begin_close`, stop the
        worker, and make the queue usable again; (items left queued or ready, and so
        dropped; items still in the worker's hands at the deadline). The handler counts
        those it gives up."""
        cond = self._cond
        left = in_flight = 0
        try:
            send_deadline = self._deadline if self._deadline is not None else deadline
            if not self.flush(max(0.0, send_deadline - time.monotonic())):
                with cond:
                    left = len(self._items) + len(self._ready)
                    self._items.clear()
                    self._ready = []
                    self._bytes = self._ready_bytes = 0
                    self._stopping = True
                    cond.notify_all()
                    # The batch in flight ends by the send deadline (its timeout was cut to
                    # it, a retry pause ends at once): the grace lets the handler count it.
                    while self._in_flight and (remaining := deadline - time.monotonic()) > 0:
                        cond.wait(remaining)
                    in_flight = self._in_flight
        finally:
            with cond:
                self._stopping = True
                cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))  # an idle worker exits at once
            with cond:
                # Ready for reuse: a worker that did not exit in time goes on serving; else
                # the next put starts a new one.
                self._stopping = False
                self._deadline = None
                cond.notify_all()
        return left, in_flight
