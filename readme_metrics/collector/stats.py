"""The dashboard's figures over time, and the caller labels that need telling apart.

- :func:`bucket_seconds` picks a round bucket width (10 ms to a week) for a time span.
- :func:`time_series` counts requests per bucket by status class, and takes the latency
  percentiles p50 and p95 per bucket (nearest rank, as everywhere in the collector: p95
  of ``n`` sorted durations is the value at rank ``ceil(0.95 * n)``).
- :func:`shared_labels` lists the caller labels that more than one caller id uses.

Every aggregation runs in SQL, and the SQL is kept standard so that another database can
run it (issue 18: PostgreSQL): sub-queries instead of ``GROUP BY`` on an alias, the
percentiles with the window functions ``ROW_NUMBER()`` and ``COUNT(*) OVER`` (SQLite
3.25 and later) and integer arithmetic for the rank. One difference remains: the bucket
index is ``CAST(x AS INTEGER)``, which truncates in SQLite (``x`` is never negative
here) but rounds in PostgreSQL, where it must become ``FLOOR(x)``.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

#: Round bucket widths in milliseconds: 10 ms to 2 h, then 3, 6, 12 h, a day, a week.
_BUCKETS_MS = (
    *(10, 20, 50, 100, 200, 500),
    *(1000, 2000, 5000, 10_000, 15_000, 30_000),
    *(60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000),
    *(3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000, 604_800_000),
)
#: The most buckets a series has (about; one more when the span ends on a boundary).
TARGET_BUCKETS = 60
#: A span shorter than this (one log, or several at one instant) is widened to it.
MIN_SPAN = 1.0
#: The percentiles of the latency series.
SERIES_PERCENTILES = (50, 95)
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def bucket_ms(span: float, target: int = TARGET_BUCKETS) -> int:
    """The smallest round bucket width in ms giving at most ``target`` buckets over ``span`` seconds."""
    span_ms = max(span, MIN_SPAN) * 1000
    for width in _BUCKETS_MS:
        if span_ms / width <= target:
            return width
    week = _BUCKETS_MS[-1]
    return week * max(1, math.ceil(span_ms / week / target))


def bucket_seconds(span: float, target: int = TARGET_BUCKETS) -> float:
    """:func:`bucket_ms` in seconds (``0.05`` for a burst of three seconds)."""
    return bucket_ms(span, target) / 1000


def _rank(p: int, n: int) -> int:
    """Nearest rank of percentile ``p`` among ``n`` values (1-based), as the SQL computes it."""
    return (p * n + 99) // 100


def time_series(conn: sqlite3.Connection, where: str, args: list[Any], lo: float, hi: float) -> dict[str, Any]:
    """Requests by status class and latency percentiles per bucket, from ``lo`` to ``hi``.

    ``where`` and ``args`` select the logs, which start within ``[lo, hi]``, except those
    stamped after ``hi`` (a clock ahead of the collector's, with ``hi`` now): they count
    in the last bucket, so that the buckets add up to every selected log. The answer:
    ``bucket_seconds``, ``start`` (Unix seconds) and ``points``, one per bucket:
    ``{"t", "1xx".."5xx", "p50", "p95"}``, the percentiles ``None`` in an empty bucket.
    """
    hi = max(hi, lo)
    width_ms = bucket_ms(hi - lo)
    start_ms = math.floor(lo * 1000 / width_ms) * width_ms
    start, width = start_ms / 1000, width_ms / 1000
    count = int((hi - start) // width) + 1
    points: list[dict[str, Any]] = [
        {"t": (start_ms + i * width_ms) / 1000, **dict.fromkeys(_CLASSES, 0), "p50": None, "p95": None}
        for i in range(count)
    ]

    def point(index: int) -> dict[str, Any]:
        return points[min(max(index, 0), count - 1)]  # float rounding at the edges

    # The bucket of each log; those from after the last bucket's start go into it.
    last = (start_ms + (count - 1) * width_ms) / 1000
    bucketed = (
        f"SELECT CASE WHEN started >= ? THEN {count - 1} ELSE CAST((started - ?) / ? AS INTEGER) END AS b,"
        f" status, duration_ms FROM logs WHERE {where}"
    )
    bucket_args = [last, start, width, *args]
    for index, status_class, n in conn.execute(
        f"SELECT b, status / 100 AS c, count(*) FROM ({bucketed}) AS t GROUP BY b, status / 100", bucket_args
    ):
        if 1 <= status_class <= 5:
            point(index)[f"{status_class}xx"] += n

    ranks = " OR ".join(f"rn = ({p} * n + 99) / 100" for p in SERIES_PERCENTILES)
    for index, rn, n, duration in conn.execute(
        "SELECT b, rn, n, duration_ms FROM ("
        " SELECT b, duration_ms, ROW_NUMBER() OVER (PARTITION BY b ORDER BY duration_ms) AS rn,"
        f" COUNT(*) OVER (PARTITION BY b) AS n FROM ({bucketed}) AS t"
        f") AS ranked WHERE {ranks}",
        bucket_args,
    ):
        for p in SERIES_PERCENTILES:
            if rn == _rank(p, n):
                point(index)[f"p{p}"] = duration
    return {"bucket_seconds": width, "start": start, "points": points}


def shared_labels(conn: sqlite3.Connection, where: str, args: list[Any], limit: int = 1000) -> list[str]:
    """The non-empty caller labels that several caller ids use among the selected logs."""
    return [
        label
        for (label,) in conn.execute(
            f"SELECT group_label FROM logs WHERE ({where}) AND group_label <> ''"
            " GROUP BY group_label HAVING count(DISTINCT group_id) > 1 ORDER BY group_label LIMIT ?",
            [*args, limit],
        )
    ]
