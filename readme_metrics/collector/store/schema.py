"""The collector's tables, for both engines, and their migrations.

Table ``schema_version`` records each version applied (``version``, ``applied`` in Unix
seconds); the schema's version is the highest. The collector brings a database up to
:data:`SCHEMA_VERSION` when it opens it, in one transaction, and refuses a database a
newer collector wrote. Several collectors starting at once are safe: on SQLite the
migration runs under the write lock (``BEGIN IMMEDIATE``), on PostgreSQL under a
transaction-scoped advisory lock, and each re-reads the version once it holds the lock.

Versions:

1. (SQLite only: files of readme_metrics 4.0 pre-releases, whose version was in
   ``PRAGMA user_version``) ``logs``: one row of the columns the dashboard queries per
   log, ``bodies``: the log as received, by ``seq``.
2. The HAR extension fields as columns: ``route``, ``weight``, ``direction``, ``parent``,
   ``host``, ``metadata`` (JSON text on SQLite, ``jsonb`` on PostgreSQL),
   ``exception_type``; indexes for the direction and the parent. A version-1 file gets
   the columns in place (its logs: incoming, weight 1, no route).
"""

from __future__ import annotations

import time

from readme_metrics.collector.store.dialect import Db

SCHEMA_VERSION = 2
#: The key of PostgreSQL's advisory lock for migrations (any constant bigint).
MIGRATION_LOCK = 0x726D5F73636865  # "rm_sche"

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
)

_SQLITE_V1 = (
    """CREATE TABLE IF NOT EXISTS logs (
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
)""",
    "CREATE TABLE IF NOT EXISTS bodies (seq INTEGER PRIMARY KEY, log TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS logs_delete AFTER DELETE ON logs BEGIN DELETE FROM bodies WHERE seq = old.seq; END",
    "CREATE INDEX IF NOT EXISTS logs_started ON logs (started)",
    "CREATE INDEX IF NOT EXISTS logs_endpoint ON logs (endpoint, started)",
    "CREATE INDEX IF NOT EXISTS logs_status ON logs (status, started)",
    "CREATE INDEX IF NOT EXISTS logs_group ON logs (group_id, started)",
)

#: Version 2's columns (the same names and meanings on both engines).
_V2_COLUMNS = (
    ("route", "TEXT"),
    ("weight", "REAL NOT NULL DEFAULT 1"),
    ("direction", "TEXT NOT NULL DEFAULT 'incoming'"),
    ("parent", "TEXT"),
    ("host", "TEXT NOT NULL DEFAULT ''"),
    ("metadata", "TEXT"),
    ("exception_type", "TEXT"),
)
_V2_INDEXES = (
    "CREATE INDEX IF NOT EXISTS logs_direction ON logs (direction, started)",
    "CREATE INDEX IF NOT EXISTS logs_parent ON logs (parent, started) WHERE parent IS NOT NULL",
)

_POSTGRES_V2 = (
    """CREATE TABLE IF NOT EXISTS logs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    received DOUBLE PRECISION NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    path TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    group_id TEXT NOT NULL,
    group_label TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    route TEXT,
    weight DOUBLE PRECISION NOT NULL DEFAULT 1,
    direction TEXT NOT NULL DEFAULT 'incoming',
    parent TEXT,
    host TEXT NOT NULL DEFAULT '',
    metadata JSONB,
    exception_type TEXT
)""",
    # No foreign key: a body is inserted with its row and deleted with it (queries.prune).
    "CREATE TABLE IF NOT EXISTS bodies (seq BIGINT PRIMARY KEY, log TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS logs_started ON logs (started)",
    "CREATE INDEX IF NOT EXISTS logs_endpoint ON logs (endpoint, started)",
    "CREATE INDEX IF NOT EXISTS logs_status ON logs (status, started)",
    "CREATE INDEX IF NOT EXISTS logs_group ON logs (group_id, started)",
    *_V2_INDEXES,
)


def current_version(db: Db) -> int:
    """The schema's version (0: an empty database)."""
    if db.dialect.name == "postgresql":
        (exists,) = db.one("SELECT to_regclass('schema_version') IS NOT NULL")
    else:
        (exists,) = db.one("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
    if exists:
        (version,) = db.one("SELECT coalesce(max(version), 0) FROM schema_version")
        return int(version)
    if db.dialect.name == "sqlite":
        (version,) = db.one("PRAGMA user_version")  # readme_metrics 4.0 pre-releases
        return int(version)
    return 0


def migrate(db: Db, where: str) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION`; the version found. Runs in the
    caller's transaction, which holds the engine's lock (see the module's docstring)."""
    found = current_version(db)
    if found > SCHEMA_VERSION:
        raise RuntimeError(
            f"{where} was written by a newer collector (schema {found}, this one knows {SCHEMA_VERSION})"
        )
    if found == SCHEMA_VERSION:
        return found
    statements: list[str] = []
    if db.dialect.name == "postgresql":
        statements += _POSTGRES_V2
    else:
        if found < 1:
            statements += _SQLITE_V1
        statements += [f"ALTER TABLE logs ADD COLUMN {name} {kind}" for name, kind in _V2_COLUMNS]
        statements += _V2_INDEXES
    statements.append(_VERSION_TABLE)
    for statement in statements:
        db.conn.execute(statement)
    applied = time.time()
    for version in range(max(found, 1), SCHEMA_VERSION + 1):
        db.run("INSERT INTO schema_version (version, applied) VALUES (?, ?) ON CONFLICT DO NOTHING", [version, applied])
    if db.dialect.name == "sqlite":
        db.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return found
