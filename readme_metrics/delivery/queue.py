"""A bounded queue and the one worker thread that empties it in batches.

It knows nothing of what it holds (captures, for the client) nor of where batches go: its
``handler`` gets each batch. The request path calls :meth:`BatchQueue.put` only: a
non-blocking append, refused (False) when ``max_events`` items or ``max_bytes`` bytes
already wait.

Batches
    The worker takes a batch as soon as ``buffer_length`` items wait, or the oldest has
    waited ``flush_interval`` seconds, with whatever else waits, up to ``max_batch``
    items and ``batch_bytes`` bytes (one larger item alone). Under load, batches are taken
    at least ``min_gap`` seconds apart unless a full batch waits: batches grow, so the
    number of posts does not.
Flush and close
    :meth:`flush` waits until the queue is empty and no batch is in the handler.
    :meth:`begin_close` sets a deadline: the worker takes what waits at once, and the
    :meth:`attempt_timeout` and :meth:`pause` it offers to the handler's retries are cut
    to it; :meth:`finish_close` waits for it, stops the worker and says what was left.
    The queue can be used again after a close.
Fork
    In a forked child (gunicorn ``--preload``) the owner calls :meth:`reset`: an empty
    queue, a new lock, its own worker.
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

#: Under load, at most one batch per this many seconds (unless ``max_batch`` wait).
MIN_POST_GAP = 0.2

#: A batch holds at most this many bytes of items (one larger item alone): building and
#: encoding hold a batch a few times over, so this bounds that memory and the size of a
#: post, whatever ``max_bytes`` lets wait.
BATCH_BYTES = 4 * 1024 * 1024

#: Of a close's time budget, the last this many seconds (at most a quarter of the budget)
#: are kept for the worker to settle its last batch and exit: posts and retries stop before.
CLOSE_GRACE = 0.25


class Batcher(Generic[T]):
    """A bounded queue of items, each with its size in bytes, and the worker thread that
    takes them in batches. :class:`BatchQueue` adds flush and close."""

    def __init__(
        self,
        handler: Callable[[list[T]], None],
        *,
        max_events: int,
        max_bytes: int,
        buffer_length: int = 1,
        flush_interval: float = 1.0,
        max_batch: int = 500,
        batch_bytes: int = BATCH_BYTES,
        min_gap: float = MIN_POST_GAP,
        name: str = "readme-metrics-worker",
    ) -> None:
        self.handler = handler
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.buffer_length = buffer_length
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.batch_bytes = batch_bytes
        self.min_gap = min_gap
        self.name = name
        # A batch waits no longer once this many wait (a full queue must not wait a gap).
        self._full = min(max_batch, max_events)
        self.reset()

    def reset(self) -> None:
        """Fresh state: at construction, and in a forked child."""
        old: threading.Condition | None = getattr(self, "_cond", None)
        self._cond = threading.Condition(threading.Lock())
        # A worker still waiting on the old state ends (see _take). Never blocks: in a
        # forked child the old lock may be held by a thread that did not come along.
        if old is not None and old.acquire(blocking=False):
            try:
                old.notify_all()
            finally:
                old.release()
        self._pid = os.getpid()
        self._items: collections.deque[tuple[T, int, float]] = collections.deque()
        self._bytes = 0
        self._in_flight = 0
        self._flushing = 0
        self._stopping = False
        self._deadline: float | None = None
        self._closes = 0  # close() calls begun: a batch older than a finished close gives up
        self._thread: threading.Thread | None = None
        self._last_take = float("-inf")
        #: Items accepted and refused (full) since the reset.
        self.accepted = 0
        self.refused = 0

    # -- the request path --------------------------------------------------------------

    def put(self, item: T, size: int) -> bool:
        """Append ``item`` (of ``size`` bytes) without blocking; False when full. (The
        owner resets the queue in a forked child, see :meth:`reset`.)"""
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
            count += 1
            # Wake the worker only at the sizes it waits for (not at every item).
            if count == 1 or count == self.buffer_length or count == self._full:
                cond.notify_all()
            if self._thread is None:
                # No new thread now (at interpreter exit, or out of resources): the items
                # stay queued for the next put, a flush or the exit flush, which hands
                # them to the handler in its own thread when no thread can start.
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
            batch = self._take()
            if batch is None:
                return
            self._handle(batch)

    def _handle(self, batch: list[T]) -> None:
        count = len(batch)
        try:
            self.handler(batch)
        finally:
            with self._cond:
                self._in_flight -= count
                self._cond.notify_all()

    def _take(self) -> list[T] | None:
        """Wait for a batch; None when stopping with nothing left, or when this thread no
        longer serves the queue (a fork noticed at put gave it fresh state)."""
        cond = self._cond

        def wait(timeout: float | None = None) -> bool:
            cond.wait(timeout)
            return self._cond is cond

        with cond:
            while not self._items and not self._stopping:
                if not wait():
                    return None
            if not self._items:
                if self._thread is threading.current_thread():
                    self._thread = None
                return None
            # flush_interval counts from when the oldest waiting item was queued.
            deadline = self._items[0][2] + self.flush_interval
            while len(self._items) < self.buffer_length and not self._hurry_locked():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if not wait(remaining):
                    return None
            # Under load, let the batch grow: one batch per gap at most.
            gap_end = self._last_take + self.min_gap
            while len(self._items) < self._full and self._bytes < self.batch_bytes and not self._hurry_locked():
                remaining = gap_end - time.monotonic()
                if remaining <= 0:
                    break
                if not wait(remaining):
                    return None
            self._last_take = time.monotonic()
            return self._pop_locked()

    def _hurry_locked(self) -> bool:
        """Whether to take what waits now: stopping, flushing or closing."""
        return self._stopping or self._flushing > 0 or self._deadline is not None

    def _pop_locked(self) -> list[T]:
        """The next batch: at most ``max_batch`` items and ``batch_bytes`` bytes (or the
        first alone if it is larger)."""
        items = self._items
        count = min(len(items), self.max_batch)
        total = 0
        for index in range(count):
            total += items[index][1]
            if total > self.batch_bytes and index:
                count = index
                break
        taken = [items.popleft() for _ in range(count)]
        self._bytes -= sum(size for _, size, _ in taken)
        self._in_flight += count
        return [item for item, _, _ in taken]


class BatchQueue(Batcher[T]):
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
        """(items queued or in the handler, bytes queued)."""
        with self._cond:
            return len(self._items) + self._in_flight, self._bytes

    def flush(self, timeout: float | None = None) -> bool:
        """Hand everything queued to the handler now; True once the queue is empty and
        the handler done, within ``timeout``. Without a worker (none can start, as late
        at interpreter exit) the handler runs in the calling thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = self._cond
        with cond:
            if os.getpid() != self._pid:
                return True
            self._flushing += 1
            cond.notify_all()
            try:
                while self._items or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    if self._items and (self._thread is None or not self._thread.is_alive()):
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
        """Run the handler in this thread until the queue is empty (lock released meanwhile)."""
        while self._items and (deadline is None or time.monotonic() < deadline):
            batch = self._pop_locked()
            self._cond.release()
            try:
                self._handle(batch)
            finally:
                self._cond.acquire()

    def begin_close(self, deadline: float) -> bool:
        """Start closing: the worker takes what waits at once; posts and retry pauses are
        cut to end ``CLOSE_GRACE`` before ``deadline``. False in a forked child that
        inherited this queue before its reset."""
        with self._cond:
            if os.getpid() != self._pid:
                return False
            self._closes += 1
            self._deadline = deadline - min(CLOSE_GRACE, max(0.0, deadline - time.monotonic()) / 4)
            self._cond.notify_all()
        return True

    def finish_close(self, deadline: float) -> tuple[int, int]:
        """Wait (until ``deadline``) for the close begun by :meth:`begin_close`, stop the
        worker, and make the queue usable again; (items left queued, and so dropped; items
        still in the handler at the deadline). The handler counts those it gives up."""
        cond = self._cond
        left = in_flight = 0
        try:
            send_deadline = self._deadline if self._deadline is not None else deadline
            if not self.flush(max(0.0, send_deadline - time.monotonic())):
                with cond:
                    left = len(self._items)
                    self._items.clear()
                    self._bytes = 0
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

    @property
    def worker(self) -> threading.Thread | None:
        """The worker thread, if one runs."""
        return self._thread
