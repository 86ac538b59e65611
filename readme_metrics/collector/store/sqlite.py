"""The SQLite engine: one file in WAL mode, shared by any number of collector processes.

WAL mode with a generous ``busy_timeout`` lets several processes (or other readers) share
the file; within a process, writes go through one connection under a lock and reads use
a small pool of connections. Each write is one ``BEGIN IMMEDIATE`` transaction, so writers
of several processes take turns; retention deletes in batches, each its own transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from readme_metrics.collector.store.dialect import SQLITE, Db
from readme_metrics.collector.store.engine import COLUMNS, Row
from readme_metrics.collector.store.schema import migrate

_INSERT = f"INSERT OR IGNORE INTO logs ({', '.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})"


class SqliteEngine:
    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path.resolve())
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        with self._write_lock:
            self._writer.execute("PRAGMA journal_mode=WAL")
            with self._transaction() as conn:
                migrate(Db(conn, SQLITE), str(self.path))

    def _connect(self) -> sqlite3.Connection:
        # timeout=30.0 is SQLite's busy timeout: wait up to 30 s for another writer.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer in a write transaction (hold ``_write_lock``)."""
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def reader(self) -> Iterator[Db]:
        with self._pool_lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = self._connect()
        try:
            yield Db(conn, SQLITE)
        finally:
            with self._pool_lock:
                if len(self._readers) < 8:
                    self._readers.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    @contextmanager
    def snapshot(self) -> Iterator[Db]:
        with self.reader() as db:
            db.conn.execute("BEGIN")
            try:
                yield db
            finally:
                db.conn.execute("COMMIT")

    def insert(self, rows: Sequence[Row]) -> int:
        """The rows (distinct ids), known ids skipped; the number stored.

        Two ``executemany`` rather than two statements a row: under the write transaction the
        new rows are those whose ``seq`` passes the largest before it (SQLite gives a new
        row the largest ``seq`` + 1 while that is below 2**63 - 1).
        """
        with self._write_lock, self._transaction() as conn:
            (before,) = conn.execute("SELECT coalesce(max(seq), 0) FROM logs").fetchone()
            if before >= 2**62:  # pragma: no cover - 4.6e18 rows: one at a time, as SQLite may pick any seq
                return self._insert_each(conn, rows)
            conn.executemany(_INSERT, [row[:-1] for row in rows])
            (stored,) = conn.execute("SELECT count(*) FROM logs WHERE seq > ?", (before,)).fetchone()
            if stored:
                conn.executemany(
                    "INSERT INTO bodies (seq, log) SELECT seq, ? FROM logs WHERE id = ? AND seq > ?",
                    [(row[-1], row[0], before) for row in rows],
                )
        return int(stored)

    @staticmethod
    def _insert_each(conn: sqlite3.Connection, rows: Sequence[Row]) -> int:
        stored = 0
        for row in rows:
            cursor = conn.execute(_INSERT, row[:-1])
            if cursor.rowcount == 1:
                conn.execute("INSERT INTO bodies (seq, log) VALUES (?, ?)", (cursor.lastrowid, row[-1]))
                stored += 1
        return stored

    def delete_batch(self, condition: str, args: Sequence[Any], limit: int) -> int:
        with self._write_lock, self._transaction() as conn:
            # The trigger logs_delete deletes the bodies.
            cursor = conn.execute(
                f"DELETE FROM logs WHERE seq IN (SELECT seq FROM logs WHERE {condition} LIMIT ?)",
                [*args, limit],
            )
            return int(cursor.rowcount)

    def size_bytes(self) -> int:
        files = (self.path, Path(f"{self.path}-wal"))
        return sum(p.stat().st_size for p in files if p.exists())

    def close(self) -> None:
        with self._pool_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self._write_lock:
            self._writer.close()
