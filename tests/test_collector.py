"""The local collector over real HTTP: the ingest protocol, storage, retention, the JSON API.

One collector subprocess (``python -m readme_metrics serve``) is shared by the module;
tests that need exact figures or other settings start their own. Each test marks its
logs with a unique string in the URL and queries the collector for that marker.
"""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import sys
import textwrap
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from readme_metrics.collector import Collector, Storage
from tests.collector_rig import (
    auth,
    collector,
    get_json,
    make_log,
    post,
    request,
    wait_count,
)
from tests.servers import ROOT, Server, gunicorn, raw_request

pytestmark = pytest.mark.timeout(120)

KEYS = ("test-api-key", "second-key")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("collector") / "logs.sqlite3"
    srv = collector(db, "--api-key", KEYS[0], "--api-key", KEYS[1], "--max-batch-mb", "1")
    yield srv
    out = srv.stop()
    assert srv.proc.returncode == 0, out
    # What the serve command printed: where to point the SDK and where to look.
    assert f"README_METRICS_SERVER={srv.url}" in out and f"dashboard:  {srv.url}/" in out
    assert "accepting 2 API key(s)" in out and "collector stopped" in out


@pytest.fixture
def marker() -> str:
    return uuid.uuid4().hex


def marked_logs(marker: str, n: int, **kw: Any) -> list[dict[str, Any]]:
    return [make_log(url=f"http://api.test/items/{i}?m={marker}", **kw) for i in range(n)]


def stored(base: str, marker: str) -> int:
    return int(get_json(base, f"/api/logs?q={marker}")["total"])


# -- the protocol ---------------------------------------------------------------------


def test_healthz(server: Server) -> None:
    status, body = request(server.url + "/healthz")
    assert status == 200 and body["ok"] is True


def test_auth(server: Server, marker: str) -> None:
    logs = marked_logs(marker, 2)
    for key, expected in [(None, 401), ("wrong-key", 401), ("", 401), (KEYS[0], 202), (KEYS[1], 202)]:
        status, body = post(server.url, logs, key=key)
        assert status == expected, (key, body)
        if expected == 401:
            assert body["error"]
    status, body = post(server.url, logs, key=None, headers={"Authorization": "Basic !!notbase64"})
    assert status == 401 and "malformed" in body["error"]
    status, body = post(server.url, logs, key=None, headers={"Authorization": "Bearer " + KEYS[0]})
    assert status == 401
    # The two accepted posts carried the same ids: stored once.
    assert stored(server.url, marker) == 2


def test_success_answer(server: Server, marker: str) -> None:
    logs = marked_logs(marker, 3)
    assert post(server.url, logs) == (202, {"accepted": 3, "stored": 3})
    # A retried batch (same ids) is accepted and not stored twice.
    assert post(server.url, logs) == (202, {"accepted": 3, "stored": 0})
    assert post(server.url, []) == (202, {"accepted": 0, "stored": 0})
    assert stored(server.url, marker) == 3


def _breakers() -> list[tuple[str, Any, str]]:
    """(name, change to one log, expected words of the reason)."""

    def entry(log: dict[str, Any]) -> dict[str, Any]:
        e: dict[str, Any] = log["request"]["log"]["entries"][0]
        return e

    return [
        ("no _id", lambda log: log.pop("_id"), "_id"),
        ("empty _id", lambda log: log.update(_id=""), "_id"),
        ("no group", lambda log: log.pop("group"), "group"),
        ("group without id", lambda log: log["group"].pop("id"), "group.id"),
        ("no entries", lambda log: log["request"]["log"].update(entries=[]), "entries"),
        ("no request.log", lambda log: log["request"].pop("log"), "request.log"),
        ("entry not object", lambda log: log["request"]["log"].update(entries=["x"]), "entries[0]"),
        ("no response", lambda log: entry(log).pop("response"), "response"),
        ("status string", lambda log: entry(log)["response"].update(status="200"), "status"),
        ("status bool", lambda log: entry(log)["response"].update(status=True), "status"),
        ("no method", lambda log: entry(log)["request"].pop("method"), "method"),
        ("no url", lambda log: entry(log)["request"].pop("url"), "url"),
        ("bad time", lambda log: entry(log).update(startedDateTime="yesterday"), "startedDateTime"),
        ("negative duration", lambda log: entry(log).update(time=-1), "time"),
        ("headers not list", lambda log: entry(log)["request"].update(headers={"a": "b"}), "headers"),
        ("log not object", None, "JSON object"),
    ]


@pytest.mark.parametrize("position", [0, 2, 4])
@pytest.mark.parametrize(("name", "breaker", "reason"), _breakers(), ids=[b[0] for b in _breakers()])
def test_malformed_log_rejects_the_whole_batch(
    server: Server, marker: str, position: int, name: str, breaker: Any, reason: str
) -> None:
    logs: list[Any] = marked_logs(marker, 5)
    if breaker is None:
        logs[position] = "not a log"
    else:
        breaker(logs[position])
    status, body = post(server.url, logs)
    assert status == 400, body
    assert f"log {position}" in body["error"] and reason in body["error"]
    assert stored(server.url, marker) == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b'{"_id": "x"}', "array"),
        (b'"text"', "array"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, ""),
    ],
)
def test_malformed_body(server: Server, raw: bytes, reason: str) -> None:
    status, body = post(server.url, None, raw=raw)
    assert status == 400, body
    assert reason in body["error"]


def test_gzip(server: Server, marker: str) -> None:
    logs = marked_logs(marker, 4)
    assert post(server.url, logs, compress=True) == (202, {"accepted": 4, "stored": 4})
    assert stored(server.url, marker) == 4
    gz = {"Content-Encoding": "gzip"}
    status, body = post(server.url, None, raw=b"not gzip at all", headers=gz)
    assert status == 400 and "gzip" in body["error"]
    truncated = gzip.compress(json.dumps(marked_logs(marker, 2)).encode())[:-12]
    status, body = post(server.url, None, raw=truncated, headers=gz)
    assert status == 400 and "truncated" in body["error"]
    status, body = post(server.url, None, raw=b"[]", headers={"Content-Encoding": "br"})
    assert status == 415
    # Two gzip members (what concatenating two gzip files gives) are one body.
    text = json.dumps(marked_logs(marker, 2)).encode()
    status, body = post(server.url, None, raw=gzip.compress(text[:10]) + gzip.compress(text[10:]), headers=gz)
    assert status == 202 and body["stored"] == 2
    assert stored(server.url, marker) == 6


def test_size_bounds(server: Server, marker: str) -> None:
    # The module's collector accepts at most 1 MiB, after decompression too.
    bomb = zlib.compress(b" " * (3 * 1024 * 1024), 9, wbits=31)
    assert len(bomb) < 10_000
    status, body = post(server.url, None, raw=b"[" + bomb, headers={"Content-Encoding": "gzip"})
    assert status == 400 or status == 413
    status, body = post(server.url, None, raw=bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed" in body["error"]
    big = marked_logs(marker, 1, response_body="x" * (1024 * 1024))
    status, body = post(server.url, big)
    assert status == 413
    status, body = post(server.url, big, compress=True)
    assert status == 413
    assert stored(server.url, marker) == 0
    # The server still answers normally afterwards.
    assert post(server.url, marked_logs(marker, 1))[0] == 202


def test_chunked_body_and_keep_alive(server: Server, marker: str) -> None:
    body = json.dumps(marked_logs(marker, 3)).encode()
    headers = {"Authorization": auth(KEYS[0]), "Content-Type": "application/json"}
    response = raw_request(server.port, "POST", "/v1/request", headers, body, chunked=True)
    assert response.status_line.startswith(b"HTTP/1.1 202"), response.raw[:300]
    assert stored(server.url, marker) == 3


def test_unread_body_of_a_refused_post_is_not_taken_for_a_request(server: Server, marker: str) -> None:
    """A 401 answered before reading the body closes the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/v1/request", body=b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.getresponse()
        assert response.status == 401
        assert response.getheader("Connection") == "close"
        response.read()
    finally:
        conn.close()


def test_v1_base_url_and_log_pages(server: Server, marker: str) -> None:
    status, body = request(server.url + "/v1", headers={"Authorization": auth(KEYS[0])})
    assert (status, body) == (200, {"baseUrl": server.url})
    assert request(server.url + "/v1")[0] == 401
    log = marked_logs(marker, 1)[0]
    assert post(server.url, [log])[0] == 202
    # {baseUrl}/logs/{_id} is the dashboard, opened on that log.
    page = raw_request(server.port, "GET", f"/logs/{log['_id']}")
    assert page.status_line.startswith(b"HTTP/1.1 200")
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert b"readme-metrics collector" in page.body
    assert get_json(server.url, f"/api/logs/{log['_id']}") == log
    assert request(server.url + "/api/logs/no-such-id")[0] == 404
    assert request(server.url + "/nowhere")[0] == 404
    assert request(server.url + "/api/summary?status=banana")[0] == 400
    assert request(server.url + "/api/logs?since=soon")[0] == 400


def _status_with_host(port: int, path: str, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_dashboard_refuses_foreign_host_names(server: Server) -> None:
    """Bound to loopback, the dashboard answers only loopback names (DNS rebinding)."""
    for host in ("localhost", "localhost:8787", "[::1]:80", "127.0.0.1", f"127.0.0.1:{server.port}"):
        assert _status_with_host(server.port, "/", host) == 200, host
        assert _status_with_host(server.port, "/api/summary", host) == 200, host
    for host in ("evil.example:8787", "evil.example", "10.0.0.1"):
        assert _status_with_host(server.port, "/api/logs", host) == 403, host
        assert _status_with_host(server.port, "/", host) == 403, host


# -- figures, filters and export (a collector of their own) ---------------------------


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An in-process collector holding known logs, over real HTTP."""
    db = tmp_path_factory.mktemp("figures") / "logs.sqlite3"
    with Collector(Storage(db)) as c:
        now = time.time()
        logs = []
        for i in range(1, 101):  # 100 fast reads of /items/<n>: 1..100 ms, 5 of them 404
            logs.append(
                make_log(
                    url=f"http://api.test/items/{i}",
                    duration_ms=float(i),
                    status=404 if i % 20 == 0 else 200,
                    started=now - 3600 + i,
                    group_id="sha512-aaa?alpha",
                    label="Alpha",
                )
            )
        for i in range(10):  # 10 posts, 500 ms each, 2 of them 500
            logs.append(
                make_log(
                    method="POST",
                    url="http://api.test/orders",
                    duration_ms=500.0,
                    status=500 if i < 2 else 201,
                    started=now - 60 + i,
                    group_id="sha512-bbb?beta",
                    label="Beta",
                    request_body='{"card":"[REDACTED 16]"}',
                )
            )
        assert post(c.url, logs[:60]) == (202, {"accepted": 60, "stored": 60})
        assert post(c.url, logs[60:], compress=True) == (202, {"accepted": 50, "stored": 50})
        yield c.url, logs


def test_summary_figures(figures: tuple[str, list[dict[str, Any]]]) -> None:
    base, _ = figures
    s = get_json(base, "/api/summary")
    assert (s["total"], s["errors"], s["callers"], s["endpoint_count"]) == (110, 7, 2, 2)
    assert s["statuses"] == {"200": 95, "201": 8, "404": 5, "500": 2}
    assert s["classes"] == {"2xx": 103, "4xx": 5, "5xx": 2}
    items, orders = s["endpoints"]
    assert items == {"endpoint": "GET /items/{id}", "count": 100, "errors": 5, "p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert orders == {"endpoint": "POST /orders", "count": 10, "errors": 2, "p50": 500.0, "p95": 500.0, "p99": 500.0}
    assert [(g["label"], g["count"], g["errors"]) for g in s["groups"]] == [("Alpha", 100, 5), ("Beta", 10, 2)]
    assert [e["status"] for e in s["recent_errors"]][:2] == [500, 500]
    assert len(s["recent_errors"]) == 7
    points = s["series"]["points"]
    assert sum(p["2xx"] + p["4xx"] + p["5xx"] for p in points) == 110
    assert len(points) <= 61


@pytest.mark.parametrize(
    ("query", "total"),
    [
        ("status=errors", 7),
        ("status=4xx", 5),
        ("status=500,404", 7),
        ("status=201", 8),
        ("endpoint=POST%20/orders", 10),
        ("group=sha512-aaa%3Falpha", 100),
        ("group=sha512-aaa%3Falpha&status=errors", 5),
        ("q=items/42", 1),
        ("q=REDACTED", 10),
        ("q=redacted", 10),
        ("q=%25", 0),
        ("since={recent}", 10),
        ("until={recent}", 100),
    ],
)
def test_filters(figures: tuple[str, list[dict[str, Any]]], query: str, total: int) -> None:
    base, _ = figures
    query = query.format(recent=time.time() - 600)
    assert get_json(base, f"/api/logs?{query}")["total"] == total
    assert get_json(base, f"/api/summary?{query}")["total"] == total


def test_log_list_pages(figures: tuple[str, list[dict[str, Any]]]) -> None:
    base, logs = figures
    first = get_json(base, "/api/logs?limit=30")
    second = get_json(base, "/api/logs?limit=30&offset=30")
    assert first["total"] == 110 and len(first["logs"]) == 30
    ids = [r["id"] for r in first["logs"] + second["logs"]]
    assert len(set(ids)) == 60
    newest_first = sorted(logs, key=lambda log: log["request"]["log"]["entries"][0]["startedDateTime"], reverse=True)
    assert ids == [log["_id"] for log in newest_first[:60]]
    row = first["logs"][0]
    assert set(row) >= {"id", "time", "method", "url", "status", "duration_ms", "group_id", "group_label", "endpoint"}


def _check_har(har: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    assert har["log"]["version"] == "1.2"
    assert har["log"]["creator"]["name"]
    entries = har["log"]["entries"]
    assert [e["_readmeLogId"] for e in entries] == [log["_id"] for log in expected]
    for entry, log in zip(entries, expected, strict=True):
        original = log["request"]["log"]["entries"][0]
        assert entry["request"] == original["request"]
        assert entry["response"] == original["response"]
        assert entry["startedDateTime"] == original["startedDateTime"]
        assert {"time", "cache", "timings"} <= set(entry) and "pageref" not in entry
    times = [e["startedDateTime"] for e in entries]
    assert times == sorted(times)


def test_export_har(figures: tuple[str, list[dict[str, Any]]]) -> None:
    base, logs = figures
    chosen = [logs[3], logs[1], logs[105]]
    status, har = request(f"{base}/api/export.har?ids={','.join(log['_id'] for log in chosen)}")
    assert status == 200
    _check_har(har, [logs[1], logs[3], logs[105]])

    body = json.dumps({"filters": {"status": "5xx"}}).encode()
    status, har = request(f"{base}/api/export.har", data=body, headers={"Content-Type": "application/json"})
    assert status == 200
    _check_har(har, [log for log in logs if log["request"]["log"]["entries"][0]["response"]["status"] == 500])

    body = json.dumps({"ids": [logs[0]["_id"], "unknown"]}).encode()
    status, har = request(f"{base}/api/export.har", data=body, headers={"Content-Type": "application/json"})
    _check_har(har, [logs[0]])

    export = raw_request(int(base.rsplit(":", 1)[1]), "GET", "/api/export.har?endpoint=POST%20/orders")
    disposition = export.header("Content-Disposition") or ""
    assert disposition.startswith('attachment; filename="readme-metrics-') and disposition.endswith('.har"')
    assert len(json.loads(export.body)["log"]["entries"]) == 10


# -- concurrency and retention --------------------------------------------------------

_POSTER = textwrap.dedent(
    """
    import json, sys, uuid
    from tests.collector_rig import make_log, post
    urls, marker, worker, batches, size = json.loads(sys.argv[1])
    for b in range(batches):
        logs = [make_log(log_id=f"{marker}-{worker}-{b}-{i}", url=f"http://api.test/c?m={marker}") for i in range(size)]
        status, body = post(urls[b % len(urls)], logs)
        assert status == 202 and body == {"accepted": size, "stored": size}, (status, body)
    """
)


def test_concurrent_ingestion_from_several_processes(server: Server, marker: str, tmp_path: Path) -> None:
    """Several app processes post at once, to two collector processes sharing one file."""
    db = tmp_path / "shared.sqlite3"
    one = collector(db)
    two = collector(db)
    try:
        workers, batches, size = 4, 25, 8
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _POSTER, json.dumps([[one.url, two.url], marker, w, batches, size])],
                cwd=ROOT,
                stderr=subprocess.PIPE,
            )
            for w in range(workers)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err.decode()
        expected = {f"{marker}-{w}-{b}-{i}" for w in range(workers) for b in range(batches) for i in range(size)}
        body = wait_count(one.url, len(expected), query=f"q={marker}")
        assert body["total"] == len(expected)
        assert {row["id"] for row in body["logs"]} == expected
        assert get_json(two.url, "/healthz")["logs"] == len(expected)
    finally:
        one.stop()
        two.stop()


def test_retention(tmp_path: Path) -> None:
    srv = collector(tmp_path / "r.sqlite3", "--max-rows", "10", "--max-age-days", "1", "--prune-interval", "0")
    try:
        now = time.time()
        old = [make_log(started=now - 3 * 86400) for _ in range(5)]
        fresh = [make_log(started=now - 10 + i) for i in range(30)]
        assert post(srv.url, old + fresh[:5])[0] == 202
        # Too old: gone at once; the fresh ones stay.
        assert {r["id"] for r in get_json(srv.url, "/api/logs")["logs"]} == {log["_id"] for log in fresh[:5]}
        for start in range(5, 30, 5):
            assert post(srv.url, fresh[start : start + 5])[0] == 202
        # At most 10 rows: the last ones received.
        assert {r["id"] for r in get_json(srv.url, "/api/logs")["logs"]} == {log["_id"] for log in fresh[20:]}
    finally:
        srv.stop()
    # Pruned at start-up too.
    srv = collector(tmp_path / "r.sqlite3", "--max-rows", "3")
    try:
        assert get_json(srv.url, "/healthz")["logs"] == 3
    finally:
        srv.stop()


# -- the SDK delivering into the collector --------------------------------------------


def test_the_sdk_delivers_into_the_collector(server: Server, marker: str) -> None:
    app = gunicorn("tests.apps.flask_app:wrapped", {"README_METRICS_SERVER": server.url})
    try:
        ok = raw_request(app.port, "GET", f"/json?m={marker}", {"X-Api-Key": "caller-key-1234"})
        assert ok.status_line.startswith(b"HTTP/1.1 200")
        echo = raw_request(
            app.port, "POST", f"/echo?m={marker}", {"Content-Type": "application/json"}, b'{"hello": "collector"}'
        )
        assert echo.status_line.startswith(b"HTTP/1.1 201")
        boom = raw_request(app.port, "GET", f"/boom?m={marker}")
        assert boom.status_line.startswith(b"HTTP/1.1 500")
        rows = wait_count(server.url, 3, query=f"q={marker}")["logs"]
    finally:
        app.stop()
    by_path = {row["path"]: row for row in rows}
    assert {p: r["status"] for p, r in by_path.items()} == {"/json": 200, "/echo": 201, "/boom": 500}
    assert all(r["group_label"] == "Tester" for r in rows)
    assert by_path["/json"]["group_id"].startswith("sha512-") and by_path["/json"]["group_id"].endswith("?1234")
    log = get_json(server.url, f"/api/logs/{by_path['/echo']['id']}")
    entry = log["request"]["log"]["entries"][0]
    assert entry["request"]["postData"]["text"] == '{"hello": "collector"}'
    assert entry["response"]["content"]["text"] == '{"hello": "collector"}'
    assert log["_version"] == 3


# -- the main job ---------------------------------------------------------------------


def test_the_demo_runs_end_to_end() -> None:
    """``python3 dev.py demo``: collector + Flask example + SDK; every log arrives, redacted."""
    done = subprocess.run(
        [sys.executable, "examples/demo.py", "--no-wait", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Sent 24 requests" in out and "24 logs arrived at the collector" in out
    assert '"password":"[REDACTED 28]"' in out and "the secret appears nowhere" in out
    assert "GET /countdown" in out and "Transfer-Encoding: chunked" in out
    assert "Dashboard: http://127.0.0.1:" in out
