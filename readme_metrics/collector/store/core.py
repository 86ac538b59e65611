"""The collector's store: :class:`Storage`, on SQLite (a file) or PostgreSQL (a URL).

:class:`Storage` keeps records: :meth:`~Storage.insert` (one transaction per batch),
:meth:`~Storage.get`, :meth:`~Storage.logs`, :meth:`~Storage.full_logs`,
:meth:`~Storage.summary`, :meth:`~Storage.outgoing_summary`, :meth:`~Storage.children`,
:meth:`~Storage.count`, :meth:`~Storage.latest`, :meth:`~Storage.prune`. Each log is
stored whole (its JSON, as received, in table ``bodies``) and as the columns the
dashboard queries (table ``logs``), so that the figures scan a narrow table. Log ids are
unique: a batch delivered twice (a retry after a lost answer), or to two collectors
sharing a database, is stored once.

Retention: rows whose exchange started more than ``max_age_days`` ago, and the oldest
rows beyond ``max_rows``, are deleted by :meth:`Storage.prune`, at most
:data:`~readme_metrics.collector.store.engine.PRUNE_BATCH` rows per statement (each its
own transaction, so that ingestion goes on between them); :meth:`Storage.insert` runs it
at most every ``prune_interval`` seconds (the server also runs it on a timer). Several
collectors pruning one database at once delete each row once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from readme_metrics.collector.store import queries
from readme_metrics.collector.store.cache import SLOW_SUMMARY, SummaryCache
from readme_metrics.collector.store.engine import PRUNE_BATCH, Engine, Row
from readme_metrics.collector.store.filters import Filters
from readme_metrics.collector.store.postgres import PostgresEngine, is_postgres_url
from readme_metrics.collector.store.records import Log, Record, StorageClosedError
from readme_metrics.collector.store.sqlite import SqliteEngine

#: The SQLite file when none is named.
DEFAULT_DB = "readme-metrics.sqlite3"


class Storage:
    """The collector's store. Thread-safe; one instance per process and database.

    ``db``: a ``postgresql://`` URL (PostgreSQL), else a SQLite file's path.
    ``slow_summary``: a summary that took this many seconds or more is kept and refreshed
    in the background (:mod:`~readme_metrics.collector.store.cache`); None: never.
    """

    def __init__(
        self,
        db: str | os.PathLike[str],
        *,
        max_age_days: float | None = 30,
        max_rows: int | None = 100_000,
        prune_interval: float = 60.0,
        prune_batch: int = PRUNE_BATCH,
        slow_summary: float | None = SLOW_SUMMARY,
    ) -> None:
        self.engine: Engine = PostgresEngine(str(db)) if is_postgres_url(db) else SqliteEngine(Path(db))
        self.dialect = self.engine.dialect
        self.location = self.engine.location
        self.path = None if is_postgres_url(db) else Path(db)
        self.max_age_days = max_age_days or None
        self.max_rows = max_rows or None
        self.prune_interval = prune_interval
        self.prune_batch = prune_batch
        self._last_prune = 0.0
        self._closed = False
        self._active = 0
        self._idle = threading.Condition()
        self._prune_lock = threading.Lock()
        self.summary_cache = SummaryCache(slow=slow_summary)

    def close(self) -> None:
        """Wait for the batches being stored, then close (later inserts: :class:`StorageClosedError`)."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._active == 0)
        self.summary_cache.close()
        self.engine.close()

    # -- writing -----------------------------------------------------------------------

    def insert(self, records: Sequence[Record]) -> int:
        """Store a batch in one transaction; the number of new rows (known ids are skipped).

        :class:`StorageClosedError` after :meth:`close`.
        """
        if not records:
            return 0
        now = time.time()
        rows: dict[str, Row] = {}
        for r in records:
            if r.id not in rows:  # the first of a batch's duplicates, as before
                rows[r.id] = (
                    *(r.id, now, r.started, r.method, r.url, r.path, r.endpoint, r.status, r.duration_ms),
                    *(r.group_id, r.group_label, r.client_ip, r.route, r.weight, r.direction, r.parent, r.host),
                    *(r.metadata_text, r.exception_type, r.text),
                )
        with self._idle:
            if self._closed:
                raise StorageClosedError(f"{self.location} is closed")
            self._active += 1
        try:
            stored = self.engine.insert(list(rows.values()))
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()
        self.maybe_prune()
        return stored

    def maybe_prune(self) -> int:
        """:meth:`prune` if ``prune_interval`` seconds passed since the last one."""
        if time.monotonic() - self._last_prune < self.prune_interval:
            return 0
        return self.prune()

    def prune(self, now: float | None = None) -> int:
        """Apply the retention bounds now, in batches; the number of rows deleted."""
        now = time.time() if now is None else now
        deleted = 0
        with self._prune_lock:
            self._last_prune = time.monotonic()
            if self.max_age_days is not None:
                deleted += self._delete("started < ?", [now - self.max_age_days * 86400])
            if self.max_rows is not None:
                with self.engine.reader() as db:
                    found = db.rows("SELECT seq FROM logs ORDER BY seq DESC LIMIT 1 OFFSET ?", [self.max_rows])
                if found:
                    deleted += self._delete("seq <= ?", [found[0][0]])
        return deleted

    def _delete(self, condition: str, args: list[Any]) -> int:
        deleted = 0
        while True:
            n = self.engine.delete_batch(condition, args, self.prune_batch)
            deleted += n
            if n < self.prune_batch:
                return deleted

    # -- reading -----------------------------------------------------------------------

    def stored_and_latest(self) -> tuple[int, int]:
        """(Logs stored, :meth:`latest`) cheaply: above 200,000 rows on PostgreSQL the count
        is the planner's estimate (as the summary's ``stored``), not a scan of the table."""
        with self.engine.reader() as db:
            return queries.stored_and_latest(db)

    def latest(self) -> int:
        """A number that changes when logs are stored: the newest row's sequence number (0: none)."""
        with self.engine.reader() as db:
            return int(db.one("SELECT coalesce(max(seq), 0) FROM logs")[0])

    def count(self, filters: Filters | None = None) -> int:
        """The logs matching ``filters``; every stored log without."""
        where, args = ("1=1", []) if filters is None else filters.where(self.dialect)
        with self.engine.reader() as db:
            return int(db.one(f"SELECT count(*) FROM logs WHERE {where}", args)[0])

    def size_bytes(self) -> int:
        """Bytes the logs take on disk: the SQLite file and its WAL, or PostgreSQL's tables."""
        return self.engine.size_bytes()

    def get(self, log_id: str) -> Log | None:
        """One stored log object, as received."""
        with self.engine.reader() as db:
            rows = db.rows("SELECT log FROM bodies WHERE seq = (SELECT seq FROM logs WHERE id = ?)", [log_id])
        return None if not rows else dict(json.loads(rows[0][0]))

    def logs(self, filters: Filters, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The newest matching logs as list rows (no bodies)."""
        where, args = filters.where(self.dialect)
        with self.engine.reader() as db:
            return queries.list_rows(
                db,
                f"SELECT {queries.LIST_COLUMNS} FROM logs WHERE {where}"
                " ORDER BY started DESC, seq DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            )

    def children(self, log_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The calls made while serving incoming log ``log_id``, as list rows, in time order."""
        with self.engine.reader() as db:
            return queries.list_rows(
                db,
                f"SELECT {queries.LIST_COLUMNS} FROM logs WHERE parent = ? ORDER BY started, seq LIMIT ?",
                [log_id, limit],
            )

    def full_logs(
        self, *, ids: Sequence[str] | None = None, filters: Filters | None = None, limit: int = 10_000
    ) -> list[Log]:
        """Whole log objects, oldest first: the given ids, or those matching ``filters``."""
        with self.engine.reader() as db:
            if ids is not None:
                found: list[tuple[Any, ...]] = []
                for start in range(0, min(len(ids), limit), 500):
                    chunk = list(ids[start : min(start + 500, limit)])
                    found += db.rows(
                        "SELECT l.started, l.seq, b.log FROM logs AS l JOIN bodies AS b ON b.seq = l.seq"
                        f" WHERE l.id IN ({','.join('?' * len(chunk))})",
                        chunk,
                    )
                found.sort(key=lambda row: (row[0], row[1]))
                texts = [text for _, _, text in found]
            else:
                where, args = (filters or Filters()).where(self.dialect)
                texts = [
                    row[0]
                    for row in db.rows(
                        f"SELECT b.log FROM (SELECT seq, started FROM logs WHERE {where}"
                        " ORDER BY started DESC, seq DESC LIMIT ?) AS l JOIN bodies AS b ON b.seq = l.seq"
                        " ORDER BY l.started, l.seq",
                        [*args, limit],
                    )
                ]
        return [dict(json.loads(text)) for text in texts]

    def summary(self, filters: Filters, *, now: float | None = None) -> dict[str, Any]:
        """Every figure of the dashboard for the logs matching ``filters`` (one snapshot, taken
        at ``as_of``, Unix seconds). A slow one may be kept a while: see ``slow_summary``."""

        def compute() -> dict[str, Any]:
            with self.engine.snapshot() as db:
                as_of = time.time()
                answer = queries.summary(db, filters, as_of if now is None else now)
            answer["as_of"] = as_of
            return answer

        if now is not None or (filters.since is not None and filters.until is None):
            return compute()  # a range ending "now" moves: not kept
        return self.summary_cache.get(filters, compute)

    def outgoing_summary(self, filters: Filters) -> dict[str, Any]:
        """The outgoing calls matching ``filters``, per host and per endpoint (one snapshot)."""
        with self.engine.snapshot() as db:
            return queries.outgoing_summary(db, filters)


def open_storage(db: str | os.PathLike[str] | None, **options: Any) -> Storage:
    """The store at ``db``: a ``postgresql://`` URL, a SQLite file, or ``None`` for
    ``./readme-metrics.sqlite3``. ``options``: those of :class:`Storage`."""
    return Storage(DEFAULT_DB if db is None else db, **options)
