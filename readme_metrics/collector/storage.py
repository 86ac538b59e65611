"""Storage of the local collector: validation of log objects and one SQLite file.

The interface is small on purpose, so that another database could stand in later:

- :func:`validate_batch` turns a decoded ``POST /v1/request`` body into :class:`Record`
  objects, or raises :class:`InvalidLogError` naming the first problem (nothing is stored then).
  Validation also encodes each log as the JSON text to store, so that whatever cannot be
  stored (a string holding a lone UTF-16 surrogate, nesting too deep to encode) is an
  invalid log, not a failed insert.
- :class:`Storage` keeps records: :meth:`~Storage.insert` (one transaction per batch),
  :meth:`~Storage.get`, :meth:`~Storage.logs`, :meth:`~Storage.full_logs`,
  :meth:`~Storage.summary`, :meth:`~Storage.count`, :meth:`~Storage.latest`, :meth:`~Storage.prune`.
  The figures over time are in :mod:`readme_metrics.collector.stats`.
- :class:`Filters` is what the dashboard filters by: time range, endpoint, status, caller
  and a free-text search.

The SQLite file runs in WAL mode with a generous ``busy_timeout``, so several collector
processes (or other readers) can share it; within a process, writes go through one
connection under a lock and reads use a small pool of connections. Each log is stored
whole (its JSON, as received, in table ``bodies``) and as the columns the dashboard
queries (table ``logs``: start time, method, URL, path, endpoint, status, duration,
caller id and label, client IP), so that the figures scan a narrow table.
Log ids are unique: a batch delivered twice (a retry after a lost answer) is stored once.

The *endpoint* of a log is its method and path with id-like segments (numbers, UUIDs,
long hexadecimal or token-like strings) replaced by ``{id}``: ``GET /items/42`` and
``GET /items/7`` are both ``GET /items/{id}``.

Retention: rows whose exchange started more than ``max_age_days`` ago, and the oldest
rows beyond ``max_rows``, are deleted by :meth:`Storage.prune`, which :meth:`Storage.insert`
runs at most every ``prune_interval`` seconds (the server also runs it on a timer).

Latency percentiles use the nearest-rank method: p95 of ``n`` sorted durations is the
value at rank ``ceil(0.95 * n)``.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from readme_metrics.collector.stats import shared_labels, time_series

Log = dict[str, Any]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    received REAL NOT NULL,
    started REAL NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    path TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    group_id TEXT NOT NULL,
    group_label TEXT NOT NULL,
    client_ip TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bodies (
    seq INTEGER PRIMARY KEY,
    log TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS logs_delete AFTER DELETE ON logs BEGIN
    DELETE FROM bodies WHERE seq = old.seq;
END;
CREATE INDEX IF NOT EXISTS logs_started ON logs (started);
CREATE INDEX IF NOT EXISTS logs_endpoint ON logs (endpoint, started);
CREATE INDEX IF NOT EXISTS logs_status ON logs (status, started);
CREATE INDEX IF NOT EXISTS logs_group ON logs (group_id, started);
"""

#: Columns of the rows the log list shows (``time`` is the start, in Unix seconds).
_LIST_COLUMNS = "id, started, method, url, path, endpoint, status, duration_ms, group_id, group_label, client_ip"
_LIST_KEYS = (
    *("id", "time", "method", "url", "path", "endpoint"),
    *("status", "duration_ms", "group_id", "group_label", "client_ip"),
)

PERCENTILES = (50, 95, 99)


class InvalidLogError(ValueError):
    """A log object (or the batch) does not follow the wire format; the message says why."""


class StorageClosedError(RuntimeError):
    """:meth:`Storage.insert` after :meth:`Storage.close` (the collector is stopping)."""


# -- validation ------------------------------------------------------------------------

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|(?=[^/]*\d)[A-Za-z0-9_.~-]{20,})$"
)


def parse_time(text: str) -> float:
    """Unix seconds of an ISO 8601 time (``2026-11-21T10:24:01.496Z``; no zone = UTC)."""
    match = _ISO.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 time: {text[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    offset = timedelta(0)
    if zone and zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc)
    seconds = moment.timestamp() - offset.total_seconds()
    return seconds + (float("0." + fraction) if fraction else 0.0)


def endpoint_of(method: str, path: str) -> str:
    """``METHOD /path`` with id-like path segments replaced by ``{id}``."""
    segments = [("{id}" if _ID_SEGMENT.match(s) else s) for s in path.split("/")]
    return f"{method.upper()} {'/'.join(segments) or '/'}"


@dataclass(frozen=True)
class Record:
    """One validated log object and the columns extracted from it."""

    id: str
    started: float
    method: str
    url: str
    path: str
    endpoint: str
    status: int
    duration_ms: float
    group_id: str
    group_label: str
    client_ip: str
    log: Log
    text: str  # the log as stored: compact JSON, valid UTF-8


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidLogError(f"{where} must be a JSON object")
    return value


def _string(value: Any, where: str, *, limit: int = 100_000) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidLogError(f"{where} must be a non-empty string")
    if len(value) > limit:
        raise InvalidLogError(f"{where} is longer than {limit} characters")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidLogError(f"{where} must be a number >= 0")
    try:
        number = float(value)  # OverflowError for an int beyond a float's range (10**400)
    except OverflowError:
        raise InvalidLogError(f"{where} is too large") from None
    if not math.isfinite(number) or number < 0:
        raise InvalidLogError(f"{where} must be a number >= 0")
    return number


def _stored_text(log: Log) -> str:
    """The JSON text to store; :class:`InvalidLogError` if it cannot be stored as UTF-8."""
    try:
        text = json.dumps(log, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidLogError("a string holds a lone UTF-16 surrogate (not valid Unicode)") from None
    except RecursionError:
        raise InvalidLogError("the log is nested too deeply") from None
    except ValueError as exc:  # NaN or Infinity (the server's JSON parser refuses them already)
        raise InvalidLogError(str(exc)) from None
    return text


def record_of(log: Any) -> Record:
    """Validate one log object and extract its columns (raises :class:`InvalidLogError`)."""
    log = _object(log, "the log")
    log_id = _string(log.get("_id"), "_id", limit=256)
    group = _object(log.get("group"), "group")
    group_id = _string(group.get("id"), "group.id", limit=1000)
    label = group.get("label")
    har = _object(_object(log.get("request"), "request").get("log"), "request.log")
    entries = har.get("entries")
    if not isinstance(entries, list) or not entries:
        raise InvalidLogError("request.log.entries must be a non-empty array")
    entry = _object(entries[0], "request.log.entries[0]")
    where = "request.log.entries[0]"
    started_text = _string(entry.get("startedDateTime"), f"{where}.startedDateTime", limit=64)
    try:
        started = parse_time(started_text)
    except ValueError as exc:
        raise InvalidLogError(f"{where}.startedDateTime: {exc}") from None
    duration = _number(entry.get("time"), f"{where}.time")
    request = _object(entry.get("request"), f"{where}.request")
    response = _object(entry.get("response"), f"{where}.response")
    method = _string(request.get("method"), f"{where}.request.method", limit=64)
    url = _string(request.get("url"), f"{where}.request.url")
    status = response.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 999:
        raise InvalidLogError(f"{where}.response.status must be an integer from 0 to 999")
    for part, name in ((request, "request"), (response, "response")):
        if not isinstance(part.get("headers", []), list):
            raise InvalidLogError(f"{where}.{name}.headers must be an array")
    path = urlsplit(url).path or "/"
    client_ip = log.get("clientIPAddress")
    return Record(
        id=log_id,
        started=started,
        method=method.upper(),
        url=url,
        path=path,
        endpoint=endpoint_of(method, path),
        status=status,
        duration_ms=duration,
        group_id=group_id,
        group_label=str(label) if label is not None else "",
        client_ip=str(client_ip) if client_ip is not None else "",
        log=log,
        text=_stored_text(log),
    )


def validate_batch(payload: Any) -> list[Record]:
    """The records of a ``POST /v1/request`` body; :class:`InvalidLogError` on the first problem."""
    if not isinstance(payload, list):
        raise InvalidLogError("the body must be a JSON array of log objects")
    records = []
    for index, log in enumerate(payload):
        try:
            records.append(record_of(log))
        except InvalidLogError as exc:
            raise InvalidLogError(f"log {index}: {exc}") from None
    return records


# -- filters ---------------------------------------------------------------------------

_STATUS_TOKEN = re.compile(r"^(?:[1-5]xx|errors|\d{1,3})$")
#: ``since`` and ``until`` are Unix seconds from 0 to this (10000-01-01T00:00:00Z).
MAX_FILTER_TIME = 253402300800


@dataclass(frozen=True)
class Filters:
    """What the dashboard filters by; every field optional.

    ``status`` is a comma-separated list of ``2xx``-style classes, exact codes, or
    ``errors`` (400 and above). ``q`` searches the whole stored log (URL, headers, bodies,
    caller), case-insensitively for ASCII.
    """

    since: float | None = None
    until: float | None = None
    endpoint: str | None = None
    status: str | None = None
    group: str | None = None
    q: str | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Filters:
        """From URL query parameters (``ValueError`` if one is malformed or out of range)."""
        for name in ("since", "until", "endpoint", "status", "group", "q"):
            try:
                params.get(name, "").encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{name} holds a lone UTF-16 surrogate") from None

        def number(name: str) -> float | None:
            text = params.get(name, "").strip()
            if not text:
                return None
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number of Unix seconds") from None
            if not 0 <= value <= MAX_FILTER_TIME:  # also NaN and the infinities
                raise ValueError(f"{name} must be Unix seconds from 0 to {MAX_FILTER_TIME}")
            return value

        status = params.get("status", "").strip().lower() or None
        if status is not None:
            for token in status.split(","):
                if not _STATUS_TOKEN.match(token.strip()):
                    raise ValueError(f"status: {token!r} is not a code, a class such as 4xx, or 'errors'")
        return cls(
            since=number("since"),
            until=number("until"),
            endpoint=params.get("endpoint") or None,
            status=status,
            group=params.get("group") or None,
            q=params.get("q") or None,
        )

    def only_time(self) -> Filters:
        return Filters(since=self.since, until=self.until)

    def where(self) -> tuple[str, list[Any]]:
        """A SQL ``WHERE`` clause (possibly ``1``) and its parameters."""
        clauses: list[str] = []
        args: list[Any] = []
        if self.since is not None:
            clauses.append("started >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("started < ?")
            args.append(self.until)
        if self.endpoint:
            clauses.append("endpoint = ?")
            args.append(self.endpoint)
        if self.group:
            clauses.append("group_id = ?")
            args.append(self.group)
        if self.status:
            alternatives = []
            for token in (t.strip() for t in self.status.split(",")):
                if token == "errors":
                    alternatives.append("status >= 400")
                elif token.endswith("xx"):
                    alternatives.append("status BETWEEN ? AND ?")
                    args += [int(token[0]) * 100, int(token[0]) * 100 + 99]
                else:
                    alternatives.append("status = ?")
                    args.append(int(token))
            clauses.append("(" + " OR ".join(alternatives) + ")")
        if self.q:
            escaped = self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("seq IN (SELECT seq FROM bodies WHERE log LIKE ? ESCAPE '\\')")
            args.append(f"%{escaped}%")
        return (" AND ".join(clauses) or "1"), args


# -- storage ---------------------------------------------------------------------------


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


class Storage:
    """The collector's SQLite store. Thread-safe; one instance per process and file."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_age_days: float | None = 30,
        max_rows: int | None = 100_000,
        prune_interval: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.max_age_days = max_age_days or None
        self.max_rows = max_rows or None
        self.prune_interval = prune_interval
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._last_prune = 0.0
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        with self._write_lock:
            self._writer.execute("PRAGMA journal_mode=WAL")
            version = self._writer.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer collector (schema {version})")
            self._writer.executescript(_SCHEMA)
            self._writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        # timeout=30.0 is SQLite's busy timeout: wait up to 30 s for another writer.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            with self._pool_lock:
                if len(self._readers) < 8:
                    self._readers.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def close(self) -> None:
        with self._pool_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self._write_lock:
            self._closed = True
            self._writer.close()

    # -- writing -----------------------------------------------------------------------

    def insert(self, records: Sequence[Record]) -> int:
        """Store a batch in one transaction; the number of new rows (known ids are skipped).

        :class:`StorageClosedError` after :meth:`close`.
        """
        if not records:
            return 0
        now = time.time()
        rows = [
            (
                (
                    r.id,
                    now,
                    r.started,
                    r.method,
                    r.url,
                    r.path,
                    r.endpoint,
                    r.status,
                    r.duration_ms,
                    r.group_id,
                    r.group_label,
                    r.client_ip,
                ),
                r.text,
            )
            for r in records
        ]
        stored = 0
        with self._write_lock:
            if self._closed:
                raise StorageClosedError(f"{self.path} is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                for columns, text in rows:
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO logs (id, received, started, method, url, path, endpoint, status,"
                        " duration_ms, group_id, group_label, client_ip) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        columns,
                    )
                    if cursor.rowcount == 1:
                        conn.execute("INSERT INTO bodies (seq, log) VALUES (?, ?)", (cursor.lastrowid, text))
                        stored += 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self.maybe_prune()
        return stored

    def maybe_prune(self) -> int:
        """:meth:`prune` if ``prune_interval`` seconds passed since the last one."""
        if time.monotonic() - self._last_prune < self.prune_interval:
            return 0
        return self.prune()

    def prune(self, now: float | None = None) -> int:
        """Apply the retention bounds now; the number of rows deleted."""
        now = time.time() if now is None else now
        deleted = 0
        with self._write_lock:
            self._last_prune = time.monotonic()
            conn = self._writer
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self.max_age_days is not None:
                    conn.execute("DELETE FROM logs WHERE started < ?", (now - self.max_age_days * 86400,))
                if self.max_rows is not None:
                    conn.execute(
                        "DELETE FROM logs WHERE seq <= (SELECT seq FROM logs ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                        (self.max_rows,),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            deleted = conn.total_changes - before
        return deleted

    # -- reading -----------------------------------------------------------------------

    def latest(self) -> int:
        """A number that changes when logs are stored: the newest row's sequence number (0: none)."""
        with self._reader() as conn:
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM logs").fetchone()[0])

    def count(self, filters: Filters | None = None) -> int:
        where, args = (filters or Filters()).where()
        with self._reader() as conn:
            return int(conn.execute(f"SELECT count(*) FROM logs WHERE {where}", args).fetchone()[0])

    def get(self, log_id: str) -> Log | None:
        """One stored log object, as received."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT log FROM bodies WHERE seq = (SELECT seq FROM logs WHERE id = ?)", (log_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def logs(self, filters: Filters, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The newest matching logs as list rows (no bodies)."""
        where, args = filters.where()
        with self._reader() as conn:
            rows = conn.execute(
                f"SELECT {_LIST_COLUMNS} FROM logs WHERE {where} ORDER BY started DESC, seq DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [dict(zip(_LIST_KEYS, row, strict=True)) for row in rows]

    def full_logs(
        self, *, ids: Sequence[str] | None = None, filters: Filters | None = None, limit: int = 10_000
    ) -> list[Log]:
        """Whole log objects, oldest first: the given ids, or those matching ``filters``."""
        with self._reader() as conn:
            if ids is not None:
                found: list[tuple[float, int, str]] = []
                for start in range(0, min(len(ids), limit), 500):
                    chunk = list(ids[start : min(start + 500, limit)])
                    marks = ",".join("?" * len(chunk))
                    found += conn.execute(
                        "SELECT l.started, l.seq, b.log FROM logs AS l JOIN bodies AS b ON b.seq = l.seq"
                        f" WHERE l.id IN ({marks})",
                        chunk,
                    ).fetchall()
                found.sort(key=lambda row: (row[0], row[1]))
                texts = [text for _, _, text in found]
            else:
                where, args = (filters or Filters()).where()
                texts = [
                    row[0]
                    for row in conn.execute(
                        f"SELECT b.log FROM (SELECT seq, started FROM logs WHERE {where}"
                        " ORDER BY started DESC, seq DESC LIMIT ?) AS l JOIN bodies AS b ON b.seq = l.seq"
                        " ORDER BY l.started, l.seq",
                        [*args, limit],
                    )
                ]
        return [dict(json.loads(text)) for text in texts]

    def summary(self, filters: Filters, *, now: float | None = None) -> dict[str, Any]:
        """Every figure of the dashboard for the logs matching ``filters``."""
        where, args = filters.where()
        now = time.time() if now is None else now
        with self._reader() as conn:
            conn.execute("BEGIN")  # one snapshot for every figure
            try:
                return self._summary(conn, filters, where, args, now)
            finally:
                conn.execute("COMMIT")

    def _summary(
        self, conn: sqlite3.Connection, filters: Filters, where: str, args: list[Any], now: float
    ) -> dict[str, Any]:
        stored, latest = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM logs").fetchone()
        total, errors, first, last, callers = conn.execute(
            "SELECT count(*), coalesce(sum(status >= 400), 0), min(started), max(started), count(DISTINCT group_id)"
            f" FROM logs WHERE {where}",
            args,
        ).fetchone()
        statuses = {
            str(status): n
            for status, n in conn.execute(
                f"SELECT status, count(*) FROM logs WHERE {where} GROUP BY status ORDER BY status", args
            )
        }
        classes: dict[str, int] = {}
        for status, n in statuses.items():
            key = f"{status[0]}xx" if len(status) == 3 else "other"
            classes[key] = classes.get(key, 0) + n

        # Requests and latency over time.
        lo = filters.since if filters.since is not None else first
        hi = filters.until if filters.until is not None else (now if filters.since is not None else last)
        series: dict[str, Any] = {"bucket_seconds": 0, "start": None, "points": []}
        if lo is not None and hi is not None and total:
            series = time_series(conn, where, args, lo, hi)

        # Latency percentiles per endpoint.
        endpoints: dict[str, dict[str, Any]] = {}
        durations: dict[str, list[float]] = {}
        for endpoint, duration, status in conn.execute(
            f"SELECT endpoint, duration_ms, status FROM logs WHERE {where} ORDER BY endpoint, duration_ms", args
        ):
            row = endpoints.setdefault(endpoint, {"endpoint": endpoint, "count": 0, "errors": 0})
            row["count"] += 1
            row["errors"] += status >= 400
            durations.setdefault(endpoint, []).append(duration)
        for endpoint, row in endpoints.items():
            for p in PERCENTILES:
                row[f"p{p}"] = percentile(durations[endpoint], p)
        endpoint_rows = sorted(endpoints.values(), key=lambda r: (-r["count"], r["endpoint"]))[:100]

        groups = [
            {"id": gid, "label": label, "count": n, "errors": e}
            for gid, label, n, e in conn.execute(
                f"SELECT group_id, max(group_label), count(*), sum(status >= 400) FROM logs WHERE {where}"
                " GROUP BY group_id ORDER BY count(*) DESC, group_id LIMIT 10",
                args,
            )
        ]
        recent_errors = [
            dict(zip(_LIST_KEYS, row, strict=True))
            for row in conn.execute(
                f"SELECT {_LIST_COLUMNS} FROM logs WHERE ({where}) AND status >= 400"
                " ORDER BY started DESC, seq DESC LIMIT 10",
                args,
            )
        ]

        # Choices for the filter menus: everything in the time range.
        t_where, t_args = filters.only_time().where()
        facet_endpoints = [
            {"endpoint": e, "count": n}
            for e, n in conn.execute(
                f"SELECT endpoint, count(*) FROM logs WHERE {t_where} GROUP BY endpoint ORDER BY endpoint", t_args
            )
        ]
        facet_groups = [
            {"id": gid, "label": label, "count": n}
            for gid, label, n in conn.execute(
                f"SELECT group_id, max(group_label), count(*) FROM logs WHERE {t_where}"
                " GROUP BY group_id ORDER BY count(*) DESC LIMIT 200",
                t_args,
            )
        ]
        return {
            "total": total,
            "errors": errors,
            "callers": callers,
            "endpoint_count": len(endpoints),
            "first": first,
            "last": last,
            "statuses": statuses,
            "classes": classes,
            "series": series,
            "endpoints": endpoint_rows,
            "groups": groups,
            "recent_errors": recent_errors,
            "facets": {"endpoints": facet_endpoints, "groups": facet_groups},
            "shared_labels": shared_labels(conn, t_where, t_args),
            "stored": stored,
            "latest": latest,
        }
