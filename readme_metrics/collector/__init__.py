"""The local collector: a metrics endpoint on your own machine, with a dashboard.

``readme-metrics serve`` (or ``python -m readme_metrics serve``) starts an HTTP server that
speaks the metrics API's protocol (``POST /v1/request``, Basic auth with the API key, a
JSON array of log objects, plain or gzip), keeps what it receives in one SQLite file (or
a PostgreSQL database: ``--db postgresql://...``) and shows it in a browser at ``/``.
Point the SDK at it with ``README_METRICS_SERVER``.

The storage and the ``import`` command need only the standard library (PostgreSQL needs
psycopg 3: the ``postgres`` extra); the server is Starlette on uvicorn with
``prometheus_client`` (``pip install "readme-metrics[collector]"``).

- :mod:`readme_metrics.collector.storage`: validation of log objects and the store, whose
  modules are in :mod:`readme_metrics.collector.store` (SQLite and PostgreSQL engines).
- :mod:`readme_metrics.collector.stats`: the figures over time, and labels several callers share.
- :mod:`readme_metrics.collector.service`: keys, the ingest gate and bound, storing, retention.
- :mod:`readme_metrics.collector.routes`: the HTTP routes (a Starlette application).
- :mod:`readme_metrics.collector.app`: the ASGI application (``uvicorn ...collector.app:app``).
- :mod:`readme_metrics.collector.server`: uvicorn on a thread (:class:`Collector`) or for ``serve``.
- :mod:`readme_metrics.collector.settings`: the settings, from options or the environment.
- :mod:`readme_metrics.collector.access`: the credential needed off loopback.
- :mod:`readme_metrics.collector.metrics`: ``/metrics`` for Prometheus.
- :mod:`readme_metrics.collector.guard`: the loopback ``Host`` rule and no cross-site posts.
- :mod:`readme_metrics.collector.ingest`: a body's JSON within bounds (bytes, values, depth).
- :mod:`readme_metrics.collector.export`: what an export asks for, and the HAR it gets.
- :mod:`readme_metrics.collector.errors`: the error answer they share.
- :mod:`readme_metrics.collector.cli`: the ``serve`` and ``import`` commands.

See docs/collector.md for the guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from readme_metrics.collector.storage import InvalidLogError, Storage

if TYPE_CHECKING:
    from readme_metrics.collector.server import Collector

__all__ = ["Collector", "InvalidLogError", "Storage"]


def __getattr__(name: str) -> Any:
    """``Collector`` is imported when first used: it needs the ``collector`` extra."""
    if name == "Collector":
        from readme_metrics.collector.server import Collector

        return Collector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
