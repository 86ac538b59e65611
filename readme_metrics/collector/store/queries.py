"""The dashboard's figures, computed in the database (the same SQL on both engines).

Counts, error counts and latency percentiles are *weighted*: a log kept by sampling
stands for ``weight`` requests (``_weight``, 1 / the sample rate). A weighted
percentile is a nearest rank over weights: the durations in ascending order, the
first whose cumulative weight reaches p % of the total weight (with every weight 1, the
value at rank ``ceil(p / 100 * n)``, as before weights existed).
"""

from __future__ import annotations

from typing import Any

from readme_metrics.collector.stats import percentiles_by, shared_labels, time_series
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


def per_endpoint(
    db: Db, where: str, args: list[Any], key: str = "endpoint", *, unit: bool = False
) -> list[dict[str, Any]]:
    """Weighted count, errors and percentiles per ``key``, the busiest first (``logs``: the
    stored logs counted, unweighted). ``unit``: every weight is 1."""
    rows = []
    for k, count, errors, logs, *values in percentiles_by(
        db,
        key,
        f"SELECT {key}, duration_ms, status, weight FROM logs WHERE {where}",
        args,
        PERCENTILES,
        extra=f", {_ERRORS} AS errors, count(*) AS logs",
        unit=unit,
    ):
        row = {"endpoint": k, "count": number(count), "errors": number(errors), "logs": logs}
        row.update({f"p{p}": value for p, value in zip(PERCENTILES, values, strict=True)})
        rows.append(row)
    rows.sort(key=lambda r: (-r["count"], r["endpoint"]))
    return rows


def summary(db: Db, filters: Filters, now: float) -> dict[str, Any]:
    """Every figure of the dashboard for the logs matching ``filters`` (incoming by default)."""
    where, args = filters.where(db.dialect)
    if db.dialect.name == "postgresql":
        db.run("SET LOCAL work_mem = '64MB'")  # sorts of a million rows in memory
    stored, latest = stored_and_latest(db)
    logs, total, errors, first, last, lightest, heaviest = db.one(
        f"SELECT count(*), coalesce(sum(weight), 0), coalesce({_ERRORS}, 0), min(started), max(started),"
        f" min(weight), max(weight) FROM logs WHERE {where}",
        args,
    )
    unit = lightest == heaviest == 1
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
        series = time_series(db, where, args, lo, hi, unit=unit)

    endpoints = per_endpoint(db, where, args, unit=unit)
    callers, top = top_callers(db, where, args, 200)
    groups = top[:10]
    recent_errors = list_rows(
        db,
        f"SELECT {LIST_COLUMNS} FROM logs WHERE ({where}) AND status >= 400 ORDER BY started DESC, seq DESC LIMIT 10",
        args,
    )

    # Choices for the filter menus: everything in the time range (the figures above, when
    # nothing but the time range is asked for).
    t_where, t_args = filters.only_time().where(db.dialect)
    if (t_where, t_args) == (where, args):
        facet_endpoints = sorted(({"endpoint": e["endpoint"], "count": e["logs"]} for e in endpoints), key=_endpoint)
        t_groups = top
    else:
        facet_endpoints = [
            {"endpoint": e, "count": n}
            for e, n in db.rows(
                f"SELECT endpoint, count(*) FROM logs WHERE {t_where} GROUP BY endpoint ORDER BY endpoint", t_args
            )
        ]
        t_groups = top_callers(db, t_where, t_args, 200)[1]
    facet_groups = sorted(
        ({"id": g["id"], "label": g["label"], "count": g["logs"]} for g in t_groups),
        key=lambda g: (-g["count"], g["id"]),
    )
    groups = [{k: v for k, v in g.items() if k != "logs"} for g in groups]
    for row in endpoints:
        del row["logs"]
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


#: Above this many rows, PostgreSQL's "stored" figure is the planner's estimate (counting
#: a million rows takes a scan of the table; the estimate is kept by autovacuum/ANALYZE).
EXACT_COUNT_LIMIT = 200_000


def stored_and_latest(db: Db) -> tuple[int, int]:
    """(Logs stored, the newest row's ``seq``): what changes when logs arrive."""
    (latest,) = db.one("SELECT coalesce(max(seq), 0) FROM logs")
    if db.dialect.name == "postgresql":
        (estimate,) = db.one("SELECT reltuples FROM pg_class WHERE oid = CAST('logs' AS regclass)")
        if estimate is not None and estimate > EXACT_COUNT_LIMIT:
            return int(estimate), int(latest)
    (stored,) = db.one("SELECT count(*) FROM logs")
    return int(stored), int(latest)


def _endpoint(row: dict[str, Any]) -> str:
    return str(row["endpoint"])


def top_callers(db: Db, where: str, args: list[Any], limit: int) -> tuple[int, list[dict[str, Any]]]:
    """(How many callers, the ``limit`` busiest: weighted count and errors, ``logs`` stored)."""
    rows = db.rows(
        f"SELECT group_id, max(group_label), sum(weight), {_ERRORS}, count(*), count(*) OVER ()"
        f" FROM logs WHERE {where} GROUP BY group_id ORDER BY sum(weight) DESC, group_id LIMIT ?",
        [*args, limit],
    )
    groups = [
        {"id": gid, "label": label, "count": number(n), "errors": number(e), "logs": logs}
        for gid, label, n, e, logs, _ in rows
    ]
    return (rows[0][-1] if rows else 0), groups


def outgoing_summary(db: Db, filters: Filters) -> dict[str, Any]:
    """The calls the API made (``direction`` forced to outgoing): per host and per endpoint."""
    where, args = filters.with_direction("outgoing").where(db.dialect)
    endpoints = per_endpoint(db, where, args)
    hosts = per_endpoint(db, where, args, key="host")
    for row in hosts:
        row["host"] = row.pop("endpoint")
    for row in (*endpoints, *hosts):
        del row["logs"]
    (total,) = db.one(f"SELECT coalesce(sum(weight), 0) FROM logs WHERE {where}", args)
    return {"total": number(total), "hosts": hosts, "endpoints": endpoints}
