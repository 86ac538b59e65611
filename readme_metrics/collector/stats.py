"""The dashboard's figures over time, and the caller labels that need telling apart.

- :func:`bucket_seconds` picks a round bucket width (10 ms to a week) for a time span.
- :func:`time_series` counts requests per bucket by status class, and takes the latency
  percentiles p50 and p95 per bucket (nearest rank, as everywhere in the collector: p95
  of ``n`` sorted durations is the value at rank ``ceil(0.95 * n)``).
- :func:`shared_labels` lists the caller labels that more than one caller id uses.

Every aggregation runs in SQL, and the SQL is the same on SQLite and PostgreSQL:
sub-queries instead of ``GROUP BY`` on an alias, the (weighted) percentiles with the
window function ``SUM(weight) OVER (... ORDER BY duration_ms)`` (SQLite 3.25 and later).
One difference remains, the dialect's: the bucket index is ``CAST(x AS INTEGER)`` in
SQLite, which truncates (``x`` is never negative here), but ``FLOOR(x)`` in PostgreSQL,
where the cast rounds. Counts are weighted (``weight``: how many requests a sampled log
stands for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from readme_metrics.collector.store.dialect import Db

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


def weighted_percentiles(key: str, source: str, percentiles: Sequence[int], *, extra: str = "") -> str:
    """SQL: per ``key``, the total weight (then ``extra`` aggregates), then each weighted
    percentile of ``duration_ms`` among the rows of ``source`` (a ``SELECT`` of ``key``,
    ``duration_ms``, ``status`` and ``weight``).

    The cumulative weight is compared as ``cum * 100 >= p * total``: exact for whole
    weights, so that with every weight 1 it is the nearest rank ``ceil(p * n / 100)``.
    """
    values = ", ".join(f"min(CASE WHEN cum * 100 >= {int(p)} * total THEN duration_ms END)" for p in percentiles)
    return (
        f"SELECT k, max(total){extra}, {values} FROM ("
        f" SELECT {key} AS k, duration_ms, status, weight,"
        f" SUM(weight) OVER (PARTITION BY {key} ORDER BY duration_ms ROWS UNBOUNDED PRECEDING) AS cum,"
        f" SUM(weight) OVER (PARTITION BY {key}) AS total FROM ({source}) AS s"
        ") AS w GROUP BY k"
    )


def percentiles_by(
    db: Db, key: str, source: str, args: list[Any], percentiles: Sequence[int], *, extra: str = "", unit: bool = False
) -> list[tuple[Any, ...]]:
    """Rows ``(key, total weight, *extra, *percentiles)`` (see :func:`weighted_percentiles`).

    ``unit``: every selected weight is 1. PostgreSQL then takes ``percentile_disc``, its
    ordered-set aggregate (the nearest rank: the same figures), which sorts each group
    once instead of computing a running sum over every row.
    """
    if not (unit and db.dialect.name == "postgresql"):
        return db.rows(weighted_percentiles(key, source, percentiles, extra=extra), args)
    fractions = ", ".join(str(p / 100) for p in percentiles)
    rows = db.rows(
        f"SELECT {key} AS k, sum(weight){extra},"
        f" percentile_disc(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY duration_ms) FROM ({source}) AS s GROUP BY k",
        args,
    )
    return [(*row[:-1], *row[-1]) for row in rows]


def time_series(db: Db, where: str, args: list[Any], lo: float, hi: float, *, unit: bool = False) -> dict[str, Any]:
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
    index = db.dialect.integer("(started - ?) / ?")
    bucketed = (
        f"SELECT CASE WHEN started >= ? THEN {count - 1} ELSE {index} END AS b,"
        f" status, duration_ms, weight FROM logs WHERE {where}"
    )
    bucket_args = [last, start, width, *args]
    for index_, status_class, n in db.rows(
        f"SELECT b, status / 100 AS c, sum(weight) FROM ({bucketed}) AS t GROUP BY b, status / 100", bucket_args
    ):
        if 1 <= status_class <= 5:
            at = point(index_)
            at[f"{status_class}xx"] = _number(at[f"{status_class}xx"] + n)

    for index_, _total, *values in percentiles_by(db, "b", bucketed, bucket_args, SERIES_PERCENTILES, unit=unit):
        for p, value in zip(SERIES_PERCENTILES, values, strict=True):
            point(index_)[f"p{p}"] = value
    return {"bucket_seconds": width, "start": start, "points": points}


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def shared_labels(db: Db, where: str, args: list[Any], limit: int = 1000) -> list[str]:
    """The non-empty caller labels that several caller ids use among the selected logs."""
    return [
        label
        for (label,) in db.rows(
            f"SELECT group_label FROM (SELECT DISTINCT group_label, group_id FROM logs WHERE ({where})"
            " AND group_label <> '') AS d GROUP BY group_label HAVING count(*) > 1 ORDER BY group_label LIMIT ?",
            [*args, limit],
        )
    ]
