"""Slow dashboard summaries, kept and refreshed in the background (stale while revalidating).

The dashboard's summary is computed from the raw rows, exactly, in one snapshot. Over a
million stored logs that takes seconds (every figure is a pass over the rows, the
percentiles a sort), which no index avoids for the default view, "All stored". So a
summary that took at least ``slow`` seconds to compute, in a store of at least
``min_rows`` logs, is kept, by its filters:

- while it is younger than ``max(min_refresh, refresh_factor * the time it took)`` it is
  the answer (a 2.5 s summary: for 25 s);
- then, for up to ``max_stale`` seconds, it is still the answer at once, and a background
  thread computes the next one (one at a time per filters);
- older, or never computed, it is computed on the request's thread, as every fast summary is.

Each answer carries ``as_of``: the Unix time its snapshot was taken. Refreshing is driven by
requests only: nothing is computed while nobody asks. Each collector process keeps its own
entries (a few, ``max_entries``), so with several collectors or workers each refreshes its
own; what they show is a snapshot of the shared database at most that old, retention's
deletions and other collectors' logs included at the next refresh.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from readme_metrics._log import logger

#: Summaries taking at least this long (seconds) are kept...
SLOW_SUMMARY = 0.25
#: ... in a store of at least this many logs (a small store's figures are always fresh).
MIN_ROWS = 100_000


@dataclass(frozen=True)
class _Entry:
    answer: dict[str, Any]
    at: float  # monotonic time the computation started (its snapshot is about as old)
    took: float


class SummaryCache:
    """Summaries by key; :meth:`get` answers from the cache or computes (see the module)."""

    def __init__(
        self,
        *,
        slow: float | None = SLOW_SUMMARY,
        min_refresh: float = 5.0,
        refresh_factor: float = 10.0,
        max_stale: float = 300.0,
        max_entries: int = 8,
        min_rows: int = MIN_ROWS,
    ) -> None:
        self.slow = slow
        self.min_rows = min_rows
        self.min_refresh = min_refresh
        self.refresh_factor = refresh_factor
        self.max_stale = max_stale
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._refreshing: dict[Hashable, threading.Thread] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, key: Hashable, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The answer for ``key``: kept, or computed by ``compute()`` (which adds ``as_of``)."""
        if self.slow is None:
            return compute()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                age = now - entry.at
                if age < max(self.min_refresh, self.refresh_factor * entry.took):
                    return entry.answer
                if age < self.max_stale:
                    self._refresh_later(key, compute)
                    return entry.answer
        return self._compute(key, compute)

    def _compute(self, key: Hashable, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        started = time.monotonic()
        answer = compute()
        took = time.monotonic() - started
        with self._lock:
            kept = self._entries.get(key)
            if kept is not None and kept.at > started:
                return answer  # a newer one was kept meanwhile
            if self.slow is not None and took >= self.slow and answer.get("stored", 0) >= self.min_rows:
                self._entries[key] = _Entry(answer, started, took)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            else:  # fast again (retention pruned, say): computed on each request from now on
                self._entries.pop(key, None)
        return answer

    def _refresh_later(self, key: Hashable, compute: Callable[[], dict[str, Any]]) -> None:
        """Start the background computation of ``key`` unless one runs (holding ``_lock``)."""
        if self._closed or key in self._refreshing:
            return

        def refresh() -> None:
            try:
                self._compute(key, compute)
            except Exception:  # the store closed under it, a broken connection: the next request retries
                logger.debug("readme_metrics collector: refreshing a summary failed", exc_info=True)
            finally:
                with self._lock:
                    self._refreshing.pop(key, None)

        thread = threading.Thread(target=refresh, name="readme-metrics-summary", daemon=True)
        self._refreshing[key] = thread
        thread.start()

    def close(self, timeout: float = 60.0) -> None:
        """No more background refreshes; wait for those running (before the store closes)."""
        with self._lock:
            self._closed = True
            running = list(self._refreshing.values())
        deadline = time.monotonic() + timeout
        for thread in running:
            thread.join(max(deadline - time.monotonic(), 0.0))
