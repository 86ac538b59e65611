"""The local collector: a metrics endpoint on your own machine, with a dashboard.

``readme-metrics serve`` (or ``python -m readme_metrics serve``) starts an HTTP server that
speaks the metrics API's protocol (``POST /v1/request``, Basic auth with the API key, a
JSON array of log objects, plain or gzip), keeps what it receives in one SQLite file (or
a PostgreSQL database: ``--db postgresql://...``) and shows it in a browser at ``/``.
Point the SDK at it with ``README_METRICS_SERVER``.

Only the standard library is used (``http.server``, ``sqlite3``, ``gzip``, ``json``);
PostgreSQL needs psycopg 3 (the ``postgres`` extra).

- :mod:`readme_metrics.collector.storage`: validation of log objects and the store, whose
  modules are in :mod:`readme_metrics.collector.store` (SQLite and PostgreSQL engines).
- :mod:`readme_metrics.collector.stats`: the figures over time, and labels several callers share.
- :mod:`readme_metrics.collector.server`: the HTTP server (routes, the dashboard JSON).
- :mod:`readme_metrics.collector.guard`: the loopback ``Host`` rule and no cross-site posts.
- :mod:`readme_metrics.collector.body`: reading a request body within a byte bound.
- :mod:`readme_metrics.collector.ingest`: a body's JSON within bounds (bytes, values, depth).
- :mod:`readme_metrics.collector.export`: what an export asks for, and the HAR it gets.
- :mod:`readme_metrics.collector.errors`: the error answer they share.
- :mod:`readme_metrics.collector.cli`: the ``serve`` command.

See docs/collector.md for the guide.
"""

from __future__ import annotations

from readme_metrics.collector.server import Collector
from readme_metrics.collector.storage import InvalidLogError, Storage

__all__ = ["Collector", "InvalidLogError", "Storage"]
