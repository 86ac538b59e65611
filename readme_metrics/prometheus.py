"""The SDK's delivery counters (``stats()``) as a ``prometheus_client`` collector.

::

    from prometheus_client import REGISTRY
    from readme_metrics.prometheus import DeliveryCollector

    REGISTRY.register(DeliveryCollector(middleware))  # anything with .stats(): a middleware, a client

Needs ``pip install "readme-metrics[prometheus]"``. Nothing here runs on the request path:
the counters are read when Prometheus scrapes, or every ``interval`` seconds by one
background thread per process (see below).

Several worker processes (gunicorn, ``uvicorn --workers``): each has its own client and
counters, and a scrape reaches one of them. With ``PROMETHEUS_MULTIPROC_DIR`` set (as for
``prometheus_client``'s multiprocess mode; or ``directory=``), every process writes its
snapshot to ``readme_metrics_delivery_<client>_<pid>.json`` there, every ``interval``
seconds and when it is scraped, and a scrape sums the files: counters over every process
that ever wrote one (an exited worker's count stays, as prometheus_client's counters
do), gauges (``waiting``, ``queue_bytes``) over the processes still running. A worker's
figures are at most ``interval`` seconds old; what a worker delivers while it shuts down
(after its last write) is not counted. The directory must be emptied between runs of
the server, as for prometheus_client.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from readme_metrics._log import logger

__all__ = ["DeliveryCollector"]

#: stats() field -> (metric name without readme_metrics_delivery_, help).
COUNTERS = {
    "queued": ("queued", "Events accepted into the SDK's queue."),
    "sent": ("sent", "Events the metrics API accepted."),
    "retried": ("retried", "Retries of batches after their first try."),
    "repaired": ("repaired", "Logs sent with text UTF-8 cannot hold replaced."),
    "batches_sent": ("batches_sent", "Posts the metrics API accepted."),
    "batches_failed": ("batches_failed", "Batches given up."),
    "bytes_sent": ("sent_bytes", "Bytes of the accepted posts' bodies."),
}
GAUGES = {
    "waiting": ("waiting", "Events not yet settled (live processes)."),
    "queue_bytes": ("queue_bytes", "Approximate bytes held by the queue (live processes)."),
}


class _Source(Protocol):
    def stats(self) -> dict[str, Any]: ...


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Writers:
    """The snapshots this process writes: one thread, restarted in a forked child."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sources: dict[str, DeliveryCollector] = {}  # by client name: the latest collector
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.wake = threading.Event()

    def add(self, collector: DeliveryCollector) -> None:
        with self.lock:
            self.sources[collector.key] = collector
            if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self.run, name="readme-metrics-prometheus", daemon=True)
                self.thread.start()

    def run(self) -> None:
        pid = os.getpid()
        while os.getpid() == pid:
            self.write_all()
            interval = min((c.interval for c in list(self.sources.values())), default=5.0)
            self.wake.wait(interval)

    def write_all(self) -> None:
        for collector in list(self.sources.values()):
            try:
                collector.write()
            except Exception:
                logger.exception("readme_metrics: writing the delivery counters for Prometheus failed")

    def after_fork(self) -> None:
        self.lock = threading.Lock()
        self.thread = None
        for collector in list(self.sources.values()):
            self.add(collector)


_writers = _Writers()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_writers.after_fork)
atexit.register(_writers.write_all)


class DeliveryCollector(Collector):
    """Delivery counters of ``source`` (anything with ``stats()``), for a Prometheus registry.

    Metrics (label ``client``: ``name``): ``readme_metrics_delivery_queued_total``,
    ``..._sent_total``, ``..._retried_total``, ``..._repaired_total``,
    ``..._batches_sent_total``, ``..._batches_failed_total``, ``..._sent_bytes_total``,
    ``..._dropped_total{reason}``, and the gauges ``..._waiting`` and ``..._queue_bytes``.
    """

    def __init__(
        self, source: _Source, *, name: str = "readme", directory: str | os.PathLike[str] | None = None,
        interval: float = 2.0,
    ) -> None:  # fmt: skip
        self.source = source
        self.name = name
        self.interval = interval
        folder = directory if directory is not None else os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.directory = Path(folder) if folder else None
        self.key = name
        if self.directory is not None:
            _writers.add(self)

    def _path(self, pid: int) -> Path:
        assert self.directory is not None
        return self.directory / f"readme_metrics_delivery_{self.name}_{pid}.json"

    def write(self) -> dict[str, Any]:
        """Write this process's snapshot (multiprocess mode); returns it."""
        snapshot = self.source.stats()
        if self.directory is not None:
            path = self._path(os.getpid())
            temporary = path.with_suffix(f".tmp{threading.get_ident()}")
            temporary.write_text(json.dumps({k: snapshot.get(k) for k in (*COUNTERS, *GAUGES, "dropped")}))
            os.replace(temporary, path)
        return snapshot

    def _snapshots(self) -> Iterator[tuple[bool, dict[str, Any]]]:
        """(process alive, snapshot) of every process (only this one without a directory)."""
        own = self.write()
        if self.directory is None:
            yield True, own
            return
        prefix = f"readme_metrics_delivery_{self.name}_"
        for path in self.directory.glob(f"{prefix}*.json"):
            pid_text = path.name[len(prefix) : -len(".json")]
            if not pid_text.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError):
                yield _alive(int(pid_text)), json.loads(path.read_text())

    def collect(self) -> Iterator[Metric]:
        counters = dict.fromkeys(COUNTERS, 0.0)
        gauges = dict.fromkeys(GAUGES, 0.0)
        dropped: dict[str, float] = {}
        for alive, snapshot in self._snapshots():
            for field in COUNTERS:
                counters[field] += snapshot.get(field) or 0
            for reason, count in (snapshot.get("dropped") or {}).items():
                dropped[reason] = dropped.get(reason, 0) + count
            if alive:
                for field in GAUGES:
                    gauges[field] += snapshot.get(field) or 0
        for field, (metric, text) in COUNTERS.items():
            family = CounterMetricFamily(f"readme_metrics_delivery_{metric}", text, labels=["client"])
            family.add_metric([self.name], counters[field])
            yield family
        family = CounterMetricFamily(
            "readme_metrics_delivery_dropped", "Events lost, by reason.", labels=["client", "reason"]
        )
        for reason, count in sorted(dropped.items()):
            family.add_metric([self.name, reason], count)
        yield family
        for field, (metric, text) in GAUGES.items():
            gauge = GaugeMetricFamily(f"readme_metrics_delivery_{metric}", text, labels=["client"])
            gauge.add_metric([self.name], gauges[field])
            yield gauge
