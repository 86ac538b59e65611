"""Storing a batch where some ids are known already: each new log gets its own body, on both engines.

SQLite inserts a batch with two ``executemany`` (the new rows found by their ``seq``), so
the bodies must still land on the right rows, whatever the mix of known and new ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from readme_metrics.collector.storage import Storage, open_storage, validate_batch
from tests.collector_rig import make_log

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def store(new_db: Callable[[str], str]) -> Iterator[Storage]:
    storage = open_storage(new_db("insert"), max_age_days=None, max_rows=None)
    yield storage
    storage.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.sets(st.integers(0, 30), max_size=12), second=st.lists(st.integers(0, 30), max_size=15))
def test_known_ids_are_skipped_and_bodies_match(store: Storage, first: set[int], second: list[int]) -> None:
    run = uuid.uuid4().hex[:8]
    before = store.count()

    def batch(ids: list[int] | set[int], tag: str) -> list[dict[str, Any]]:
        return [make_log(log_id=f"{run}-{i}", url=f"http://api.test/{tag}/{i}") for i in ids]

    assert store.insert(validate_batch(batch(first, "first"))) == len(first)
    # The second batch: known ids, new ones, and duplicates within it (the first kept).
    new = {i for i in second if i not in first}
    assert store.insert(validate_batch(batch(second, "second"))) == len(new)
    assert store.count() == before + len(first | new)
    for i in first | new:
        stored = store.get(f"{run}-{i}")
        assert stored is not None
        tag = "first" if i in first else "second"
        assert stored["request"]["log"]["entries"][0]["request"]["url"] == f"http://api.test/{tag}/{i}"
    with store.engine.reader() as db:
        (orphans,) = db.one("SELECT count(*) FROM logs AS l LEFT JOIN bodies AS b ON b.seq = l.seq WHERE b.seq IS NULL")
        (bodies,), (logs,) = db.one("SELECT count(*) FROM bodies"), db.one("SELECT count(*) FROM logs")
    assert orphans == 0 and bodies == logs
