"""The collector's figures over time and caller labels (collector/stats.py), on a real store.

The series is checked against figures computed here from the logs themselves: bucket by
bucket, the request counts by status class and the nearest-rank p50 and p95 (with
``storage.percentile``, the per-endpoint figures' own function, not the SQL under test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from readme_metrics.collector import Collector, Storage
from readme_metrics.collector.stats import bucket_seconds
from readme_metrics.collector.storage import Filters, percentile, validate_batch
from tests.collector_rig import get_json, make_log, post

T0 = 1_800_000_000  # a whole second (2027-01-15T08:00:00Z): bucket k starts at T0 + 0.05 k
BUCKETS = 60  # a burst of three seconds: 50 ms buckets


def burst() -> list[tuple[int, float, int]]:
    """(bucket, duration ms, status) of each log: 1 to 5 logs a bucket, every 7th bucket empty."""
    rows = []
    for k in range(BUCKETS):
        if k % 7 == 4:
            continue
        for j in range(1 + k % 5):
            status = 500 if j == 0 and k % 10 == 0 else (404 if j == 2 else 200)
            rows.append((k, float((j * 37 + k * 11) % 100 + 1), status))
    return rows


def burst_logs() -> list[dict[str, Any]]:
    # 13 ms into its bucket, so that no log sits on a boundary.
    return [
        make_log(started=T0 + k * 0.05 + 0.013, duration_ms=d, status=s, url=f"http://api.test/b/{k}")
        for k, d, s in burst()
    ]


@pytest.fixture
def store(new_db: Callable[[str], str]) -> Iterator[Storage]:
    storage = Storage(new_db("logs"), max_age_days=None)
    yield storage
    storage.close()


@pytest.mark.parametrize(
    ("span", "width"),
    [
        (0.0, 0.02),  # one log: widened to a second
        (2.95, 0.05),  # a burst of three seconds: 60 bars, not three
        (10.0, 0.2),
        (59.0, 1.0),
        (600.0, 10.0),
        (3600.0, 60.0),
        (86400.0, 1800.0),
        (30 * 86400.0, 43200.0),
        (365 * 86400.0, 7 * 86400.0),
        (5 * 365 * 86400.0, 5 * 7 * 86400.0),
    ],
)
def test_bucket_widths_suit_the_span(span: float, width: float) -> None:
    assert bucket_seconds(span) == width
    assert span / width <= 60


def test_a_burst_gets_fine_buckets_with_counts_and_percentiles(store: Storage) -> None:
    logs = burst_logs()
    store.insert(validate_batch(logs))
    series = store.summary(Filters(), now=T0 + 3600)["series"]
    assert series["bucket_seconds"] == 0.05
    assert series["start"] == T0
    points = series["points"]
    assert len(points) == BUCKETS
    assert [p["t"] for p in points] == [round(T0 + k * 0.05, 3) for k in range(BUCKETS)]
    for k, point in enumerate(points):
        rows = [(d, s) for b, d, s in burst() if b == k]
        durations = sorted(d for d, _ in rows)
        expected = {f"{c}xx": sum(1 for _, s in rows if s // 100 == c) for c in range(1, 6)}
        expected |= {"p50": percentile(durations, 50), "p95": percentile(durations, 95)}
        assert {key: point[key] for key in expected} == expected, k
    assert sum(p["2xx"] + p["4xx"] + p["5xx"] for p in points) == len(logs)
    assert points[4]["p50"] is None and points[4]["2xx"] == 0  # an empty bucket: a gap, not 0 ms


def test_the_series_follows_the_filters(store: Storage) -> None:
    store.insert(validate_batch(burst_logs()))
    # Errors only: a bucket's percentiles are those of its errors.
    points = store.summary(Filters(status="errors"), now=T0 + 3600)["series"]["points"]
    by_time = {round(p["t"], 3): p for p in points}
    for k in {b for b, _, s in burst() if s >= 400}:
        durations = sorted(d for b, d, s in burst() if b == k and s >= 400)
        point = by_time[round(T0 + k * 0.05, 3)]
        assert (point["p50"], point["p95"]) == (percentile(durations, 50), percentile(durations, 95))
    # A time range: the buckets cover the range asked for, from since to until.
    series = store.summary(Filters(since=T0 - 3600, until=T0 + 3600), now=T0 + 3600)["series"]
    assert series["bucket_seconds"] == 120.0
    assert sum(p["2xx"] + p["4xx"] + p["5xx"] for p in series["points"]) == len(burst())
    busy = [p for p in series["points"] if p["p50"] is not None]
    assert len(busy) == 1
    everything = sorted(d for _, d, _ in burst())
    assert (busy[0]["p50"], busy[0]["p95"]) == (percentile(everything, 50), percentile(everything, 95))
    # Logs stamped after the collector's "now" (a clock ahead) count in the last bucket,
    # also when the range starts after "now".
    for since, now in ((T0 - 60, T0 - 30), (T0, T0 - 100)):
        points = store.summary(Filters(since=since), now=now)["series"]["points"]
        assert sum(p["2xx"] + p["4xx"] + p["5xx"] for p in points) == len(burst())
        assert (points[-1]["p50"], points[-1]["p95"]) == (percentile(everything, 50), percentile(everything, 95))


def test_shared_labels(store: Storage) -> None:
    def log(group_id: str, label: str, started: float) -> dict[str, Any]:
        return make_log(group_id=group_id, label=label, started=started)

    store.insert(
        validate_batch(
            [
                log("sha512-one?1234", "Acme", T0),
                log("sha512-one?1234", "Acme", T0 + 1),  # one caller twice: not shared
                log("sha512-two?5678", "Acme", T0 + 2),
                log("sha512-three?9999", "Solo", T0 + 3),
                log("sha512-four?0001", "", T0 + 4),  # no label: the dashboard shows ids
                log("sha512-five?0002", "", T0 + 5),
                log("sha512-six?0003", "Old", T0 - 7200),
                log("sha512-seven?0004", "Old", T0 - 7100),
                log("sha512-eight?0005", "Solo", T0 - 7000),
            ]
        )
    )
    assert store.summary(Filters(), now=T0 + 10)["shared_labels"] == ["Acme", "Old", "Solo"]
    # Within the time range only, as the caller menu.
    assert store.summary(Filters(since=T0 - 60), now=T0 + 10)["shared_labels"] == ["Acme"]
    # Other filters do not change how a caller is named.
    assert store.summary(Filters(group="sha512-one?1234"), now=T0 + 10)["shared_labels"] == ["Acme", "Old", "Solo"]


def test_stored_and_latest_change_when_logs_arrive(new_db: Callable[[str], str]) -> None:
    with Collector(Storage(new_db("logs"))) as c:
        assert get_json(c.url, "/healthz") == {"ok": True, "logs": 0, "latest": 0}
        empty = get_json(c.url, "/api/summary")
        assert (empty["stored"], empty["latest"], empty["total"]) == (0, 0, 0)
        logs = [make_log() for _ in range(3)]
        assert post(c.url, logs)[0] == 202
        health = get_json(c.url, "/healthz")
        assert health["logs"] == 3 and health["latest"] > 0
        # The summary holds the same marker, whatever its filters.
        summary = get_json(c.url, "/api/summary?status=5xx")
        assert (summary["stored"], summary["latest"], summary["total"]) == (3, health["latest"], 0)
        assert post(c.url, logs)[0] == 202  # a retried batch: nothing new, nothing changes
        assert get_json(c.url, "/healthz") == health
        assert post(c.url, [make_log()])[0] == 202
        assert get_json(c.url, "/healthz")["latest"] != health["latest"]
