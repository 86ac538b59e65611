"""A real Prometheus server scrapes the collector (bound to 0.0.0.0, so with its token) and
answers a rate through its HTTP API.

Debian's ``prometheus`` package (``python3 dev.py test`` installs it when root); the test is
skipped, saying so, only when the binary is not there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector_rig import collector, make_log, post
from tests.servers import Server, free_port

pytestmark = pytest.mark.timeout(180)

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
TOKEN = "scrape-token-0123456789"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Server]]:
    if PROMETHEUS is None:
        pytest.skip("no prometheus binary (Debian package prometheus; python3 dev.py test installs it as root)")
    srv = collector(tmp_path / "scraped.sqlite3", "--host", "0.0.0.0", "--token", TOKEN)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: readme-metrics-collector\n"
        "    authorization:\n"
        f"      credentials: {TOKEN}\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{srv.port}']\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", srv
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        srv.stop()


def query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
    except OSError:
        return []  # not up yet
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def until(base: str, promql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = query(base, promql)
        if result and float(result[0]["value"][1]) > 0:
            return result
        assert time.monotonic() < deadline, f"{promql}: nothing above 0 within {timeout}s ({result})"
        time.sleep(0.5)


def test_prometheus_scrapes_the_collector_and_reads_a_rate(prometheus: tuple[str, Server]) -> None:
    base, srv = prometheus
    until(base, 'up{job="readme-metrics-collector"}')  # scraped, with the token
    posted = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:  # traffic for several scrapes
        assert post(srv.url, [make_log(url=f"http://api.test/orders/{i}") for i in range(10)])[0] == 202
        posted += 10
        time.sleep(0.1)
    rate = until(base, "rate(readme_metrics_collector_logs_stored_total[5s])")
    assert 0 < float(rate[0]["value"][1]) <= posted
    by_route = until(base, 'sum by (route) (rate(readme_metrics_requests_total{status_class="2xx"}[5s]))')
    assert by_route[0]["metric"] == {"route": "/orders/{id}"}
    # Once the traffic stops, the counter Prometheus holds is what was stored.
    deadline = time.monotonic() + 30
    while float(query(base, "readme_metrics_collector_logs_stored_total")[0]["value"][1]) != posted:
        assert time.monotonic() < deadline
        time.sleep(0.5)
