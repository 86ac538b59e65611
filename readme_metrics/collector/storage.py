"""Storage of the local collector: validation of log objects, and the store (SQLite or
PostgreSQL). The names live in :mod:`readme_metrics.collector.store`; see docs/collector.md.

- :func:`validate_batch` turns a decoded ``POST /v1/request`` body into :class:`Record`
  objects, or raises :class:`InvalidLogError` naming the first problem.
- :func:`open_storage` opens the store at a ``postgresql://`` URL or a SQLite file;
  :class:`Storage` is the store (``Storage(path)`` opens a SQLite file, as before).
- :class:`Filters` is what the dashboard filters by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from readme_metrics.collector.store.core import DEFAULT_DB, Storage, open_storage
from readme_metrics.collector.store.filters import FILTER_NAMES, MAX_FILTER_TIME, Filters
from readme_metrics.collector.store.queries import PERCENTILES
from readme_metrics.collector.store.records import (
    InvalidLogError,
    Log,
    Record,
    StorageClosedError,
    endpoint_of,
    parse_time,
    record_of,
    validate_batch,
)
from readme_metrics.collector.store.schema import SCHEMA_VERSION

__all__ = [
    "DEFAULT_DB",
    "FILTER_NAMES",
    "MAX_FILTER_TIME",
    "PERCENTILES",
    "SCHEMA_VERSION",
    "Filters",
    "InvalidLogError",
    "Log",
    "Record",
    "Storage",
    "StorageClosedError",
    "endpoint_of",
    "open_storage",
    "parse_time",
    "percentile",
    "record_of",
    "validate_batch",
]


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty): what the
    database computes when every weight is 1."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
