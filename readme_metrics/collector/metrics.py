"""``GET /metrics``: the stored requests and the collector's own counters, for Prometheus.

- ``readme_metrics_requests_total{route, method, status_class}``: the requests the stored
  logs stand for (a sampled log counts its ``_weight``).
- ``readme_metrics_request_duration_seconds{route}``: a latency histogram of the stored logs.
- ``readme_metrics_collector_batches_total``, ``..._logs_received_total``,
  ``..._logs_stored_total`` (new to the store) and ``..._rejected_batches_total{reason}``.
- ``readme_metrics_collector_route_overflow_total``: logs labelled ``route="other"`` because
  ``max_routes`` distinct routes were already labelled (the labels come from clients, so
  their number is bounded; the bound holds per process).
- ``readme_metrics_collector_stored_logs`` and ``..._storage_bytes``: the store's size,
  read when scraped.

Under several worker processes (``serve --workers N``, or any server with
``PROMETHEUS_MULTIPROC_DIR`` set) the counters use ``prometheus_client``'s multiprocess
mode: each process writes its values to files in that directory and a scrape, whichever
worker answers it, sums them over live and exited processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector as PromCollector

from readme_metrics.collector.service import weight_of
from readme_metrics.collector.storage import Record

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_REASONS = {400: "invalid", 401: "unauthorized", 403: "forbidden", 413: "too_large", 415: "media_type"}
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def split_endpoint(endpoint: str, method: str) -> tuple[str, str]:
    """(route, method) of a record's ``endpoint`` ("GET /items/{id}") and ``method``."""
    upper = method.upper()
    head, _, rest = endpoint.partition(" ")
    route = rest if rest and head.upper() == upper else endpoint
    return route[:200], upper if upper in _METHODS else "other"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class _StorageSize(PromCollector):
    def __init__(self, count: Callable[[], int], size: Callable[[], int]) -> None:
        self.count, self.size = count, size

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("readme_metrics_collector_stored_logs", "Logs in the store.", value=self.count())
        yield GaugeMetricFamily(
            "readme_metrics_collector_storage_bytes",
            "Bytes the logs take on disk (the SQLite file and its WAL, or PostgreSQL's tables).",
            value=self.size(),
        )


class Metrics:
    """The collector's Prometheus metrics (one per application)."""

    def __init__(self, count: Callable[[], int], size: Callable[[], int], max_routes: int) -> None:
        self.multiprocess = multiprocess_dir()
        self.registry = CollectorRegistry()
        own = None if self.multiprocess else self.registry  # multiprocess: values live in files
        self.max_routes = max_routes
        self._routes: set[str] = set()
        self._lock = threading.Lock()
        self.requests = Counter(
            "readme_metrics_requests",
            "Requests the stored logs stand for (sampled logs weighted).",
            ["route", "method", "status_class"],
            registry=own,
        )
        self.duration = Histogram(
            "readme_metrics_request_duration_seconds",
            "Latency of the stored logs' requests.",
            ["route"],
            buckets=_BUCKETS,
            registry=own,
        )
        self.batches = Counter("readme_metrics_collector_batches", "Batches accepted.", registry=own)
        self.received = Counter("readme_metrics_collector_logs_received", "Logs in accepted batches.", registry=own)
        self.stored = Counter("readme_metrics_collector_logs_stored", "Logs new to the store.", registry=own)
        self.rejected = Counter(
            "readme_metrics_collector_rejected_batches", "Batches refused, by reason.", ["reason"], registry=own
        )
        self.overflow = Counter(
            "readme_metrics_collector_route_overflow",
            'Logs labelled route="other": the distinct routes were at max_routes.',
            registry=own,
        )
        self._size = _StorageSize(count, size)
        if self.multiprocess:
            MultiProcessCollector(self.registry, self.multiprocess)  # type: ignore[no-untyped-call]
        self.registry.register(self._size)

    def _route(self, route: str, logs: int) -> str:
        """``route``, or "other" once ``max_routes`` others are labelled (``logs`` counted)."""
        with self._lock:
            if route in self._routes:
                return route
            if len(self._routes) < self.max_routes:
                self._routes.add(route)
                return route
        self.overflow.inc(logs)
        return "other"

    def stored_batch(self, records: Sequence[Record], stored: int) -> None:
        """Count an accepted batch (``stored`` of its logs were new to the store)."""
        self.batches.inc()
        self.received.inc(len(records))
        self.stored.inc(stored)
        if not stored:  # a batch retried after its answer was lost: counted already
            return
        # Grouped first: a batch holds few distinct endpoints, and a label lookup costs.
        groups: dict[tuple[str, str, int], tuple[list[float], list[float]]] = {}
        for record in records:
            weights, durations = groups.setdefault((record.endpoint, record.method, record.status), ([], []))
            weights.append(weight_of(record))
            durations.append(max(record.duration_ms, 0.0) / 1000)
        for (endpoint, method_text, status), (weights, durations) in groups.items():
            route, method = split_endpoint(endpoint, method_text)
            route = self._route(route, len(weights))
            self.requests.labels(route, method, status_class(status)).inc(sum(weights))
            histogram = self.duration.labels(route)
            for seconds in durations:
                histogram.observe(seconds)

    def refused(self, status: int) -> None:
        self.rejected.labels(_REASONS.get(status, "unavailable" if status == 503 else str(status))).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
