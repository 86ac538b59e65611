"""readme_metrics.prometheus: the SDK's delivery counters for Prometheus, in one process and
summed over gunicorn's worker processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from readme_metrics.prometheus import DeliveryCollector
from tests.servers import gunicorn, raw_request
from tests.standin import Fault, MetricsStandIn

pytestmark = pytest.mark.timeout(120)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted({"client": "readme", **labels}.items()))), 0.0)


class Stub:
    """A source whose stats() the test sets (what a client's stats() answers)."""

    def __init__(self, **stats: object) -> None:
        self.snapshot = {"queued": 0, "sent": 0, "retried": 0, "dropped": {}, "waiting": 0, **stats}

    def stats(self) -> dict[str, object]:
        return dict(self.snapshot)


def test_one_process_shows_its_stats_as_they_are() -> None:
    stub = Stub(queued=7, sent=5, retried=2, dropped={"queue_full": 1, "rejected": 1}, waiting=1, queue_bytes=300)
    registry = CollectorRegistry()
    registry.register(DeliveryCollector(stub, directory=None))
    text = generate_latest(registry).decode()
    assert value(text, "readme_metrics_delivery_queued_total") == 7
    assert value(text, "readme_metrics_delivery_sent_total") == 5
    assert value(text, "readme_metrics_delivery_retried_total") == 2
    assert value(text, "readme_metrics_delivery_dropped_total", reason="queue_full") == 1
    assert value(text, "readme_metrics_delivery_dropped_total", reason="rejected") == 1
    assert value(text, "readme_metrics_delivery_waiting") == 1
    assert value(text, "readme_metrics_delivery_queue_bytes") == 300
    stub.snapshot["sent"] = 6  # read when scraped, not copied at registration
    assert value(generate_latest(registry).decode(), "readme_metrics_delivery_sent_total") == 6


def test_a_directory_sums_live_and_exited_processes(tmp_path: Path) -> None:
    """Counters of an exited process stay in the sum; its gauges do not."""
    exited = 2**22 + 12345  # no such process (above the default pid_max)
    (tmp_path / f"readme_metrics_delivery_readme_{exited}.json").write_text(
        '{"queued": 10, "sent": 9, "dropped": {"rejected": 1}, "waiting": 50, "queue_bytes": 999}'
    )
    (tmp_path / "readme_metrics_delivery_other_1.json").write_text('{"sent": 1000}')  # another client's
    stub = Stub(queued=3, sent=3, waiting=2)
    registry = CollectorRegistry()
    registry.register(DeliveryCollector(stub, directory=tmp_path))
    text = generate_latest(registry).decode()
    assert value(text, "readme_metrics_delivery_queued_total") == 13
    assert value(text, "readme_metrics_delivery_sent_total") == 12
    assert value(text, "readme_metrics_delivery_dropped_total", reason="rejected") == 1
    assert value(text, "readme_metrics_delivery_waiting") == 2
    assert (tmp_path / f"readme_metrics_delivery_readme_{os.getpid()}.json").exists()


def _within(timeout: float, probe: Callable[[], float], expected: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_gunicorn_workers_are_summed(tmp_path: Path) -> None:
    """Two gunicorn workers, each with its client: whichever answers /metrics, the counters
    are those of both (sent, and dropped by reason), and each worker served requests."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    with MetricsStandIn() as api:
        env = {"README_METRICS_SERVER": api.url, "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "RM_RETRY_BACKOFF": "0"}
        server = gunicorn("tests.apps.prometheus_app:app", env, "-w", "2", threads=8)
        try:
            with ThreadPoolExecutor(8) as pool:  # concurrent: both workers take some
                pids = set(pool.map(lambda _: raw_request(server.port, "GET", "/pid?0.2").body, range(40)))
            assert len(pids) == 2, pids  # both workers served (and logged) requests
            api.wait_for(lambda log: True, count=40, timeout=30)

            def sent() -> float:
                return value(
                    raw_request(server.port, "GET", "/metrics").body.decode(), "readme_metrics_delivery_sent_total"
                )

            assert _within(20, sent, 40) == 40
            # Every scrape, whichever worker answers it, has the sum.
            assert {sent() for _ in range(10)} == {40.0}
            text = raw_request(server.port, "GET", "/metrics").body.decode()
            assert value(text, "readme_metrics_delivery_queued_total") == 40
            # Drops, by reason, are summed too: the API refuses the next batches (4xx).
            api.faults.extend(Fault(status=400) for _ in range(6))
            for _ in range(6):
                raw_request(server.port, "GET", "/hello")

            def rejected() -> float:
                body = raw_request(server.port, "GET", "/metrics").body.decode()
                return value(body, "readme_metrics_delivery_dropped_total", reason="rejected")

            assert _within(20, rejected, 6) == 6
            assert {len(list(multiproc.glob("readme_metrics_delivery_readme_*.json")))} == {2}
        finally:
            server.stop()
