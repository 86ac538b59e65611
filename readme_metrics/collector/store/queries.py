"""The dashboard's figures, computed in the database (the same SQL on both engines).

Counts, error counts and latency percentiles are *weighted*: a log kept by sampling
stands for ``weight`` requests (``_weight``, 1 / the sample rate). A weighted
percentile is a nearest rank over weights: the durations in ascending order, the
first whose cumulative weight reaches p % of the total weight (with every weight 1, the
value at rank ``ceil(p / 100 * n)``, as before weights existed).
"""

from __future__ import annotations

from typing import Any

from readme_metrics.collector.stats import shared_labels, time_series, weighted_percentiles
from readme_metrics.collector.store.dialect import Db
from readme_metrics.collector.store.filters import Filters

#: Columns of the rows the log list shows (``time`` is the start, in Unix seconds).
LIST_COLUMNS = (
    "id, started, method, url, path, endpoint, status, duration_ms, group_id, group_label, client_ip,"
    " route, weight, direction, parent, exception_type"
)
LIST_KEYS = (
    *("id", "time", "method", "url", "path", "endpoint"),
    *("status", "duration_ms", "group_id", "group_label", "client_ip"),
    *("route", "weight", "direction", "parent", "exception_type"),
)
PERCENTILES = (50, 95, 99)
_ERRORS = "sum(CASE WHEN status >= 400 THEN weight ELSE 0 END)"


def number(value: Any) -> Any:
    """A weighted sum as JSON shows it best: ``12`` rather than ``12.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def list_rows(db: Db, sql: str, args: list[Any]) -> list[dict[str, Any]]:
    return [dict(zip(LIST_KEYS, row, strict=True)) for row in db.rows(sql, args)]


def per_endpoint(db: Db, where: str, args: list[Any], key: str = "endpoint") -> list[dict[str, Any]]:
    """Weighted count, errors and percentiles per ``key``, the busiest first."""
    rows = []
    for k, count, errors, *values in db.rows(
        weighted_percentiles(
            key,
            f"SELECT {key}, duration_ms, status, weight FROM logs WHERE {where}",
            PERCENTILES,
            extra=f", {_ERRORS} AS errors",
        ),
        args,
    ):
        row = {"endpoint": k, "count": number(count), "errors": number(errors)}
        row.update({f"p{p}": value for p, value in zip(PERCENTILES, values, strict=True)})
        rows.append(row)
    rows.sort(key=lambda r: (-r["count"], r["endpoint"]))
    return rows


def summary(db: Db, filters: Filters, now: float) -> dict[str, Any]:
    """Every figure of the dashboard for the logs matching ``filters`` (incoming by default)."""
    where, args = filters.where(db.dialect)
    stored, latest = db.one("SELECT count(*), coalesce(max(seq), 0) FROM logs")
    logs, total, errors, first, last, callers = db.one(
        f"SELECT count(*), coalesce(sum(weight), 0), coalesce({_ERRORS}, 0), min(started), max(started),"
        f" count(DISTINCT group_id) FROM logs WHERE {where}",
        args,
    )
    statuses = {
        str(status): number(n)
        for status, n in db.rows(
            f"SELECT status, sum(weight) FROM logs WHERE {where} GROUP BY status ORDER BY status", args
        )
    }
    classes: dict[str, Any] = {}
    for status, n in statuses.items():
        key = f"{status[0]}xx" if len(status) == 3 else "other"
        classes[key] = number(classes.get(key, 0) + n)

    # Requests and latency over time.
    lo = filters.since if filters.since is not None else first
    hi = filters.until if filters.until is not None else (now if filters.since is not None else last)
    series: dict[str, Any] = {"bucket_seconds": 0, "start": None, "points": []}
    if lo is not None and hi is not None and logs:
        series = time_series(db, where, args, lo, hi)

    endpoints = per_endpoint(db, where, args)
    groups = [
        {"id": gid, "label": label, "count": number(n), "errors": number(e)}
        for gid, label, n, e in db.rows(
            f"SELECT group_id, max(group_label), sum(weight), {_ERRORS} FROM logs WHERE {where}"
            " GROUP BY group_id ORDER BY sum(weight) DESC, group_id LIMIT 10",
            args,
        )
    ]
    recent_errors = list_rows(
        db,
        f"SELECT {LIST_COLUMNS} FROM logs WHERE ({where}) AND status >= 400 ORDER BY started DESC, seq DESC LIMIT 10",
        args,
    )

    # Choices for the filter menus: everything in the time range.
    t_where, t_args = filters.only_time().where(db.dialect)
    facet_endpoints = [
        {"endpoint": e, "count": n}
        for e, n in db.rows(
            f"SELECT endpoint, count(*) FROM logs WHERE {t_where} GROUP BY endpoint ORDER BY endpoint", t_args
        )
    ]
    facet_groups = [
        {"id": gid, "label": label, "count": n}
        for gid, label, n in db.rows(
            f"SELECT group_id, max(group_label), count(*) FROM logs WHERE {t_where}"
            " GROUP BY group_id ORDER BY count(*) DESC, group_id LIMIT 200",
            t_args,
        )
    ]
    return {
        "total": number(total),
        "logs": logs,
        "errors": number(errors),
        "callers": callers,
        "endpoint_count": len(endpoints),
        "first": first,
        "last": last,
        "statuses": statuses,
        "classes": classes,
        "series": series,
        "endpoints": endpoints[:100],
        "groups": groups,
        "recent_errors": recent_errors,
        "facets": {"endpoints": facet_endpoints, "groups": facet_groups},
        "shared_labels": shared_labels(db, t_where, t_args),
        "stored": stored,
        "latest": latest,
    }


def outgoing_summary(db: Db, filters: Filters) -> dict[str, Any]:
    """The calls the API made (``direction`` forced to outgoing): per host and per endpoint."""
    where, args = filters.with_direction("outgoing").where(db.dialect)
    endpoints = per_endpoint(db, where, args)
    hosts = per_endpoint(db, where, args, key="host")
    for row in hosts:
        row["host"] = row.pop("endpoint")
    (total,) = db.one(f"SELECT coalesce(sum(weight), 0) FROM logs WHERE {where}", args)
    return {"total": number(total), "hosts": hosts, "endpoints": endpoints}
