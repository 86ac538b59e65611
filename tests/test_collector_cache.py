"""Slow summaries kept and refreshed in the background (store/cache.py), on both engines.

The thresholds are lowered so that every summary counts as slow: what is checked is what
the dashboard sees, a kept answer (same ``as_of``), then, once it is stale, the fresh one
computed in the background, with another collector's logs and retention's deletions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from readme_metrics.collector.storage import Filters, Storage, open_storage, validate_batch
from readme_metrics.collector.store.cache import SummaryCache
from tests.collector_rig import make_log

pytestmark = pytest.mark.timeout(120)

NewDb = Callable[[str], str]


def logs(n: int, *, status: int = 200) -> list[Any]:
    return validate_batch([make_log(status=status, started=time.time() - 60) for _ in range(n)])


def eventually(read: Callable[[], Any], wanted: Any, timeout: float = 30.0) -> Any:
    """``read()`` until it equals ``wanted`` (a background refresh lands), else the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == wanted or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture
def two(new_db: NewDb) -> Iterator[tuple[Storage, Storage]]:
    """Two collectors' stores on one database; the first keeps every summary."""
    db = new_db("cache")
    reader = open_storage(db, max_age_days=None, max_rows=None)
    writer = open_storage(db, max_age_days=None, max_rows=None)
    reader.summary_cache.slow = 0.0
    reader.summary_cache.min_rows = 0
    yield reader, writer
    writer.close()
    reader.close()


def test_a_kept_summary_is_answered_then_refreshed(two: tuple[Storage, Storage]) -> None:
    reader, writer = two
    writer.insert(logs(3))
    first = reader.summary(Filters())
    assert first["logs"] == 3 and first["as_of"] <= time.time()
    writer.insert(logs(2, status=500))
    # Kept: the same answer (fresh for min_refresh seconds, then stale but still served).
    assert reader.summary(Filters()) is first
    # Other filters are another entry, computed now.
    assert reader.summary(Filters(status="errors"))["logs"] == 2
    # Stale at once: the kept answer is served and the next one computed in the background.
    reader.summary_cache.min_refresh = reader.summary_cache.refresh_factor = 0.0
    assert eventually(lambda: reader.summary(Filters())["logs"], 5) == 5
    later = reader.summary(Filters())
    assert later["as_of"] > first["as_of"] and later["errors"] == 2


def test_retention_reaches_a_kept_summary(two: tuple[Storage, Storage]) -> None:
    reader, writer = two
    writer.insert(logs(6))
    assert reader.summary(Filters())["logs"] == 6
    writer.max_rows = 2
    assert writer.prune() == 4
    reader.summary_cache.min_refresh = reader.summary_cache.refresh_factor = 0.0
    assert eventually(lambda: reader.summary(Filters())["logs"], 2) == 2


def test_a_moving_range_or_an_explicit_now_is_never_kept(two: tuple[Storage, Storage]) -> None:
    reader, writer = two
    writer.insert(logs(1))
    since = time.time() - 3600
    assert reader.summary(Filters(since=since))["logs"] == 1
    assert reader.summary(Filters(), now=time.time())["logs"] == 1
    writer.insert(logs(1))
    assert reader.summary(Filters(since=since))["logs"] == 2
    assert reader.summary(Filters(), now=time.time())["logs"] == 2


def test_small_stores_are_never_kept(new_db: NewDb) -> None:
    """With the defaults, a store below MIN_ROWS logs answers fresh figures however slow."""
    store = open_storage(new_db("small"), max_age_days=None, max_rows=None)
    try:
        store.summary_cache.slow = 0.0  # every summary "slow": the row bound alone decides
        store.insert(logs(2))
        assert store.summary(Filters())["logs"] == 2
        store.insert(logs(1))
        assert store.summary(Filters())["logs"] == 3
    finally:
        store.close()


def test_one_refresh_at_a_time_and_close_waits_for_it() -> None:
    """Many requests on a stale entry start one computation; close() waits for it."""
    cache = SummaryCache(slow=0.0, min_rows=0, min_refresh=0.0, refresh_factor=0.0)
    calls, release = [], threading.Event()

    def compute() -> dict[str, Any]:
        calls.append(1)
        if len(calls) > 1:
            release.wait(30)
        return {"stored": 1, "n": len(calls)}

    assert cache.get("k", compute)["n"] == 1
    answers = [cache.get("k", compute)["n"] for _ in range(20)]
    assert answers == [1] * 20  # the stale answer, at once
    assert eventually(lambda: len(calls), 2) == 2  # one background computation...
    assert [cache.get("k", compute)["n"] for _ in range(20)] == [1] * 20
    assert len(calls) == 2  # ... while it runs, no other
    release.set()
    cache.close()
    assert cache.get("k", compute)["n"] == 2
    assert len(calls) == 2  # closed: no more background refreshes are started
