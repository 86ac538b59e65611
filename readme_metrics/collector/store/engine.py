"""What a storage engine offers :class:`~readme_metrics.collector.store.core.Storage`.

Two engines implement it: :mod:`~readme_metrics.collector.store.sqlite` (one file, the
default) and :mod:`~readme_metrics.collector.store.postgres` (a shared server).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from readme_metrics.collector.store.dialect import Db, Dialect

#: The columns of table ``logs`` that an insert fills, in the order of :data:`Row`.
COLUMNS = (
    *("id", "received", "started", "method", "url", "path", "endpoint", "status", "duration_ms"),
    *("group_id", "group_label", "client_ip", "route", "weight", "direction", "parent", "host"),
    *("metadata", "exception_type"),
)
#: One log to insert: the values of :data:`COLUMNS`, then the log's JSON text.
Row = tuple[Any, ...]
#: Rows deleted per statement by retention.
PRUNE_BATCH = 5000


class Engine(Protocol):
    dialect: Dialect
    #: Where the logs are, for people (a PostgreSQL URL without its password).
    location: str

    def reader(self) -> AbstractContextManager[Db]:
        """A connection for reading (autocommit: each statement sees the latest data)."""

    def snapshot(self) -> AbstractContextManager[Db]:
        """A connection in a read-only transaction: every query sees the same data."""

    def insert(self, rows: Sequence[Row]) -> int:
        """Store the rows in one transaction, skipping known ids; the number stored."""

    def delete_batch(self, condition: str, args: Sequence[Any], limit: int) -> int:
        """Delete (with their bodies) at most ``limit`` rows matching
        ``condition`` in one transaction; the number deleted. Safe with several
        collectors deleting at once."""

    def size_bytes(self) -> int:
        """Bytes the logs take on disk (files, or tables and their indexes)."""

    def close(self) -> None: ...
