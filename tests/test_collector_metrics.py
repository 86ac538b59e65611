"""The collector's /metrics: stored requests by route, method and status class (weighted),
latency per route, its own ingest counters, the store's size; bounded labels; summed over
``serve --workers 2``."""

from __future__ import annotations

import copy
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from readme_metrics.collector import Collector, Storage
from tests.collector_rig import collector, make_log, post, request

pytestmark = pytest.mark.timeout(120)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(base: str) -> Samples:
    status, body = request(base + "/metrics")
    assert status == 200, body
    return parse(body["raw"])


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def weighted(log: dict[str, Any], weight: float) -> dict[str, Any]:
    log = copy.deepcopy(log)
    log["request"]["log"]["entries"][0]["_weight"] = weight
    return log


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Collector]:
    with Collector(Storage(tmp_path / "m.sqlite3"), api_keys=["k"], max_routes=3, max_batch_bytes=200_000) as c:
        yield c


def test_requests_latency_and_ingest_counters(small: Collector) -> None:
    base = small.url
    batch = [
        make_log(url="http://api.test/items/1", duration_ms=20),
        make_log(url="http://api.test/items/2", duration_ms=40),
        weighted(make_log(url="http://api.test/items/3", duration_ms=300), 10),  # sampled: 1 in 10
        make_log(method="POST", url="http://api.test/items", status=503, duration_ms=2000),
        weighted(make_log(url="http://api.test/items/4", status=404), True),  # not a number: 1
    ]
    assert post(base, batch, key="k") == (202, {"accepted": 5, "stored": 5})
    assert post(base, batch, key="k") == (202, {"accepted": 5, "stored": 0})  # a retry: counted once
    m = scrape(base)
    assert get(m, "readme_metrics_requests_total", route="/items/{id}", method="GET", status_class="2xx") == 12
    assert get(m, "readme_metrics_requests_total", route="/items/{id}", method="GET", status_class="4xx") == 1
    assert get(m, "readme_metrics_requests_total", route="/items", method="POST", status_class="5xx") == 1
    assert get(m, "readme_metrics_request_duration_seconds_count", route="/items/{id}") == 4
    assert get(m, "readme_metrics_request_duration_seconds_bucket", route="/items/{id}", le="0.05") == 3
    assert get(m, "readme_metrics_request_duration_seconds_sum", route="/items") == pytest.approx(2.0)
    assert get(m, "readme_metrics_collector_batches_total") == 2
    assert get(m, "readme_metrics_collector_logs_received_total") == 10
    assert get(m, "readme_metrics_collector_logs_stored_total") == 5
    assert get(m, "readme_metrics_collector_stored_logs") == 5
    # Refused batches, by reason.
    assert post(base, batch, key="wrong")[0] == 401
    assert post(base, None, raw=b"{not json", key="k")[0] == 400
    assert post(base, None, raw=b"[" + b" " * 300_000 + b"]", key="k")[0] == 413
    assert post(base, batch, key="k", headers={"Content-Type": "text/plain"})[0] == 415
    m = scrape(base)
    for reason in ("unauthorized", "invalid", "too_large", "media_type"):
        assert get(m, "readme_metrics_collector_rejected_batches_total", reason=reason) == 1, reason
    assert get(m, "readme_metrics_collector_batches_total") == 2


def test_route_labels_are_bounded(small: Collector) -> None:
    """Routes come from clients: past max_routes (3 here) they are counted as "other"."""
    marker = uuid.uuid4().hex[:8]
    logs = [make_log(url=f"http://api.test/{marker}-{i}/x") for i in range(6)]
    assert post(small.url, logs, key="k")[0] == 202
    m = scrape(small.url)
    routes = {dict(labels)["route"] for name, labels in m if name == "readme_metrics_requests_total"}
    assert len(routes) == 4 and "other" in routes, routes
    assert get(m, "readme_metrics_requests_total", route="other", method="GET", status_class="2xx") == 3
    assert get(m, "readme_metrics_collector_route_overflow_total") == 3


def _per_process(directory: Path, tmp_path: Path) -> dict[str, Samples]:
    """Each worker's own counters, read from its file alone (prometheus_client's reader)."""
    out = {}
    for path in directory.glob("counter_*.db"):
        alone = tmp_path / path.stem
        alone.mkdir()
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(alone))
        out[path.stem] = parse(generate_latest(registry).decode())
    return out


def _post_until_taken(base: str, batch: list[dict[str, Any]]) -> int:
    """Post; again after a 503 (each worker takes 4 batches at once), as the SDK does."""
    for _ in range(100):
        status = post(base, batch)[0]
        if status != 503:
            return status
        time.sleep(0.05)
    return 503


def test_two_workers_are_counted_together(tmp_path: Path) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)  # serve uses the caller's empty directory
    try:
        srv = collector(tmp_path / "w.sqlite3", "--workers", "2")
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    try:
        batches = [[make_log(url=f"http://api.test/w/{i}/{j}") for j in range(50)] for i in range(40)]
        with ThreadPoolExecutor(8) as pool:  # at once, on new connections: both workers take some
            assert set(pool.map(lambda batch: _post_until_taken(srv.url, batch), batches)) == {202}
        for _ in range(10):  # whichever worker answers, it counts both
            m = scrape(srv.url)
            assert get(m, "readme_metrics_collector_batches_total") == 40
            assert get(m, "readme_metrics_collector_logs_stored_total") == 2000
            assert get(m, "readme_metrics_collector_stored_logs") == 2000
        workers = _per_process(multiproc, tmp_path)
        batches = [get(m, "readme_metrics_collector_batches_total") for m in workers.values()]
        assert len(workers) == 2 and all(batches) and sum(batches) == 40, batches
    finally:
        out = srv.stop()
    assert srv.proc.returncode == 0, out
    assert "2 worker process(es)" in out and "collector stopped" in out
