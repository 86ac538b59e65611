"""Self-telemetry: the counters of one client, and their snapshot (``stats()``).

Every field is described in ``docs/delivery.md``. The queue counts what it accepts and
refuses itself (under its own lock, on the request path); the rest is counted here by the
worker.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any


class Stats:
    """Thread-safe counters: sent, failed, retried, dropped by reason, last error/success."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zeroed counters (at construction, and in a forked child, where the lock may be
        held by a thread that did not come along: a new one is made)."""
        self._lock = threading.Lock()
        self.sent = 0
        self.batches_sent = 0
        self.batches_failed = 0
        self.retried = 0
        self.repaired = 0
        self.bytes_sent = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self.last_success: float | None = None

    def succeeded(self, count: int, sent_bytes: int) -> None:
        with self._lock:
            self.sent += count
            self.batches_sent += 1
            self.bytes_sent += sent_bytes
            self.last_success = time.time()

    def retrying(self) -> None:
        with self._lock:
            self.retried += 1

    def error(self, message: str) -> None:
        with self._lock:
            self.last_error = message
            self.last_error_time = time.time()

    def repair(self) -> None:
        """A log kept, with text UTF-8 cannot hold replaced (see the builder)."""
        with self._lock:
            self.repaired += 1

    def drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += count

    def gave_up(self, reason: str, count: int, message: str) -> None:
        """A batch of ``count`` logs given up for ``reason``."""
        with self._lock:
            self.batches_failed += 1
            self.dropped[reason] += count
            self.last_error = message
            self.last_error_time = time.time()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "sent": self.sent,
                "batches_sent": self.batches_sent,
                "batches_failed": self.batches_failed,
                "retried": self.retried,
                "repaired": self.repaired,
                "bytes_sent": self.bytes_sent,
                "dropped": dict(self.dropped),
                "last_error": self.last_error,
                "last_error_time": self.last_error_time,
                "last_success": self.last_success,
            }
