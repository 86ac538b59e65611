"""The PostgreSQL engine (psycopg 3, the ``postgres`` extra): one database shared by any
number of collector processes, on one machine or several.

- A batch is one statement (``unnest`` of one array per column, ``INSERT ... ON CONFLICT
  (id) DO NOTHING RETURNING``, the bodies of the new rows alone), in one transaction:
  a log id is stored once whoever receives it, and a retried batch adds nothing. Rows
  go in in id order, so that two collectors inserting overlapping batches take their
  locks in the same order (no deadlock).
- Retention deletes at most :data:`~readme_metrics.collector.store.engine.PRUNE_BATCH`
  rows a statement, skipping rows another collector is deleting (``FOR UPDATE SKIP
  LOCKED``).
- The schema is created and migrated under an advisory lock
  (:data:`~readme_metrics.collector.store.schema.MIGRATION_LOCK`): collectors starting
  at once migrate one after the other, the later ones finding nothing to do.
- Connections: a small pool, each in autocommit mode; a connection that broke (a server
  restart) is dropped and a new one made on the next use.

PostgreSQL text cannot hold the NUL character, which JSON allows (``"\\u0000"``): in the
columns (not in the stored log) it becomes U+FFFD.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:  # a dependency on CPython; the standard library's json elsewhere
    import orjson
except ImportError:  # pragma: no cover - PyPy
    orjson = None  # type: ignore[assignment]

from readme_metrics.collector.store.dialect import POSTGRES, Db
from readme_metrics.collector.store.engine import COLUMNS, Row
from readme_metrics.collector.store.schema import MIGRATION_LOCK, migrate

_TYPES = (
    *("text", "float8", "float8", "text", "text", "text", "text", "int4", "float8"),
    *("text", "text", "text", "text", "float8", "text", "text", "text"),
    *("text", "text"),
)
_RECORD = ", ".join(f"{column} {kind}" for column, kind in zip((*COLUMNS, "log"), (*_TYPES, "text"), strict=True))
_SELECT = ", ".join("metadata::jsonb" if c == "metadata" else c for c in COLUMNS)
#: One parameter, the batch as JSON (an array of objects): json_to_recordset reads it in
#: C, where arrays of strings would be escaped one by one in Python.
_INSERT = (
    f"WITH input AS (SELECT * FROM json_to_recordset(%s::json) AS t({_RECORD})),"
    f" ins AS (INSERT INTO logs ({', '.join(COLUMNS)}) SELECT {_SELECT} FROM input ORDER BY id"
    " ON CONFLICT (id) DO NOTHING RETURNING seq, id)"
    " INSERT INTO bodies (seq, log) SELECT ins.seq, input.log FROM ins JOIN input ON input.id = ins.id"
)
_KEYS = (*COLUMNS, "log")
_POOL_SIZE = 16


def is_postgres_url(db: object) -> bool:
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def shown(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _without_nul(row: Row) -> Row:
    """The row with U+FFFD for NUL in its columns (the metadata's JSON too), not in the log."""
    *columns, log = row
    cleaned = [v.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd") if isinstance(v, str) else v for v in columns]
    return (*cleaned, log)


class PostgresEngine:
    dialect = POSTGRES

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise RuntimeError("PostgreSQL storage needs psycopg 3: pip install 'readme-metrics[postgres]'") from None
        self._psycopg = psycopg
        self.url = url
        self.location = shown(url)
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            migrate(Db(conn, POSTGRES), self.location)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._psycopg.connect(self.url, autocommit=True)
        try:
            yield conn
        finally:
            broken = conn.closed or conn.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE
            with self._lock:
                if not broken and len(self._idle) < _POOL_SIZE:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    @contextmanager
    def reader(self) -> Iterator[Db]:
        with self._connection() as conn:
            yield Db(conn, POSTGRES)

    @contextmanager
    def snapshot(self) -> Iterator[Db]:
        with self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield Db(conn, POSTGRES)

    def insert(self, rows: Sequence[Row]) -> int:
        ordered = sorted(rows, key=lambda row: row[0])
        if any("\\u0000" in row[-1] for row in ordered):
            ordered = [_without_nul(row) for row in ordered]
        objects = [dict(zip(_KEYS, row, strict=True)) for row in ordered]
        # orjson: several times faster on the stored texts; every string is valid UTF-8 (checked
        # on ingest) and every number finite.
        batch = orjson.dumps(objects).decode() if orjson else json.dumps(objects, ensure_ascii=False)
        with self._connection() as conn, conn.transaction():
            return int(conn.execute(_INSERT, [batch]).rowcount)

    def delete_batch(self, condition: str, args: Sequence[Any], limit: int) -> int:
        db_sql = Db(None, POSTGRES).sql
        sql = db_sql(
            f"WITH d AS (DELETE FROM logs WHERE seq IN (SELECT seq FROM logs WHERE {condition} LIMIT ?"
            " FOR UPDATE SKIP LOCKED) RETURNING seq),"
            " b AS (DELETE FROM bodies WHERE seq IN (SELECT seq FROM d)) SELECT count(*) FROM d"
        )
        with self._connection() as conn, conn.transaction():
            row = conn.execute(sql, [*args, limit]).fetchone()
        return int(row[0]) if row else 0

    def size_bytes(self) -> int:
        with self.reader() as db:
            query = "SELECT pg_total_relation_size('logs') + pg_total_relation_size('bodies')"
            return int(db.one(query)[0])

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
