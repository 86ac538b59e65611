"""The local collector over real HTTP: the ingest protocol, storage, retention, the JSON API.

One collector subprocess (``python -m readme_metrics serve``) is shared by the module;
tests that need exact figures or other settings start their own. Each test marks its
logs with a unique string in the URL and queries the collector for that marker.
"""

from __future__ import annotations

import errno
import gzip
import http.client
import json
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from readme_metrics.collector import Collector, Storage
from readme_metrics.collector.cli import main as cli_main
from readme_metrics.collector.storage import Record
from tests.collector_rig import (
    auth,
    collector,
    get_json,
    make_log,
    post,
    request,
    send_raw,
    wait_count,
)
from tests.servers import ROOT, Server, gunicorn, raw_request

pytestmark = pytest.mark.timeout(120)

KEYS = ("test-api-key", "second-key")


@pytest.fixture(scope="module")
def server(new_db: Callable[[str], str]) -> Iterator[Server]:
    db = new_db("logs")
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


def _altered(old: str, new: str | bytes) -> Callable[[str], bytes]:
    """Two marked logs as JSON text, the first ``old`` in it (in log 0) replaced by ``new``."""

    def body(marker: str) -> bytes:
        text = json.dumps(marked_logs(marker, 2))
        assert old in text, old
        if isinstance(new, bytes):
            return text.encode().replace(old.encode(), new, 1)
        return text.replace(old, new, 1).encode()

    return body


_MALFORMED_BODIES: list[tuple[str, bytes | Callable[[str], bytes], str]] = [
    ("empty", b"", "not JSON"),
    ("not json", b"{not json", "not JSON"),
    ("object", b'{"_id": "x"}', "array"),
    ("string", b'"text"', "array"),
    ("not utf-8", b"\xff\xfe\x00", "not JSON"),
    # Python's json reads these; they would be stored, then served back as invalid JSON.
    ("NaN time", _altered('"time": 12.5', '"time": NaN'), "not JSON"),
    ("-Infinity time", _altered('"time": 12.5', '"time": -Infinity'), "not JSON"),
    ("Infinity elsewhere", _altered('"development": false', '"development": Infinity'), "not JSON"),
    ("1e400 time", _altered('"time": 12.5', '"time": 1e400'), "1e400 is too large"),
    ("1e400 elsewhere", _altered('"_version": 3', '"_version": 1e400'), "1e400 is too large"),
    # An integer beyond a float's range (math.isfinite raised OverflowError: a 500).
    ("10**400 time", _altered('"time": 12.5', '"time": 1' + "0" * 400), "log 0: request.log.entries[0].time"),
    # Lone surrogates cannot be encoded as UTF-8 for SQLite (UnicodeEncodeError: a 500).
    ("lone surrogate escape in url", _altered("items/0", "items/\\ud800"), "log 0: a string holds a lone"),
    ("lone surrogate escape in a header", _altered('"application/json"', '"\\udfff"'), "lone UTF-16 surrogate"),
    ("lone surrogate bytes", _altered("items/0", b"items/\xed\xa0\x80"), "lone UTF-16 surrogate"),
]


@pytest.mark.parametrize(("raw", "reason"), [b[1:] for b in _MALFORMED_BODIES], ids=[b[0] for b in _MALFORMED_BODIES])
def test_malformed_body(server: Server, marker: str, raw: bytes | Callable[[str], bytes], reason: str) -> None:
    status, body = post(server.url, None, raw=raw(marker) if callable(raw) else raw)
    assert status == 400, body
    assert reason in body["error"], body
    assert stored(server.url, marker) == 0
    # The collector is fine afterwards.
    assert post(server.url, marked_logs(marker, 1)) == (202, {"accepted": 1, "stored": 1})


def _raw_post(body: bytes, framing: Sequence[str], *, port: int) -> bytes:
    head = [
        "POST /v1/request HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: {auth(KEYS[0])}",
        "Content-Type: application/json",
        "Connection: close",
        *framing,
    ]
    return send_raw(port, ("\r\n".join(head) + "\r\n\r\n").encode() + body)


_BAD_FRAMINGS: list[tuple[str, Callable[[int], list[str]], Callable[[bytes], bytes]]] = [
    # int() took these; -1 made the server read until the client closed (no bound).
    ("length -1", lambda n: ["Content-Length: -1"], lambda b: b),
    ("length +n", lambda n: [f"Content-Length: +{n}"], lambda b: b),
    ("length 1_0", lambda n: [f"Content-Length: {n // 10}_{n % 10}"], lambda b: b),
    ("length hex", lambda n: [f"Content-Length: {hex(n)}"], lambda b: b),
    ("two lengths", lambda n: [f"Content-Length: {n}", f"Content-Length: {n + 1}"], lambda b: b),
    ("chunk size -1", lambda n: ["Transfer-Encoding: chunked"], lambda b: b"-1\r\n" + b),
    ("chunk size 0x", lambda n: ["Transfer-Encoding: chunked"], lambda b: b"0x%x\r\n%s\r\n0\r\n\r\n" % (len(b), b)),
    ("chunk size +", lambda n: ["Transfer-Encoding: chunked"], lambda b: b"+%x\r\n%s\r\n0\r\n\r\n" % (len(b), b)),
]


@pytest.mark.parametrize(("framing", "frame"), [b[1:] for b in _BAD_FRAMINGS], ids=[b[0] for b in _BAD_FRAMINGS])
def test_malformed_body_framing(
    server: Server, marker: str, framing: Callable[[int], list[str]], frame: Callable[[bytes], bytes]
) -> None:
    """Only plain digits make a Content-Length (hex digits a chunk size): else 400 and close."""
    body = json.dumps(marked_logs(marker, 1)).encode()
    answer = _raw_post(frame(body), framing(len(body)), port=server.port)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"Connection: close" in answer
    assert b"malformed" in answer
    assert stored(server.url, marker) == 0
    # The same body, framed properly, is stored.
    answer = _raw_post(body, [f"Content-Length: {len(body)}"], port=server.port)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
    assert stored(server.url, marker) == 1


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
        smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.request("POST", "/v1/request", body=smuggled, headers={"Content-Type": "application/json"})
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


# -- binding, stopping, options (collectors of their own) -----------------------------


def test_ipv6_host(tmp_path: Path) -> None:
    """``--host ::1`` binds an IPv6 socket (the server was IPv4 only)."""
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support (socket.has_ipv6 is False)")
    storage = Storage(tmp_path / "v6.sqlite3")
    try:
        c = Collector(storage, "::1")
    except OSError as exc:
        storage.close()
        if exc.errno == errno.EADDRNOTAVAIL:
            pytest.skip("::1 is not configured on this machine (EADDRNOTAVAIL)")
        raise
    with c:
        assert c.url == f"http://[::1]:{c.port}" and c.loopback_only
        logs = [make_log() for _ in range(2)]
        assert post(c.url, logs) == (202, {"accepted": 2, "stored": 2})
        assert {row["id"] for row in get_json(c.url, "/api/logs")["logs"]} == {log["_id"] for log in logs}
        status, body = request(c.url + "/v1", headers={"Authorization": auth("any-key")})
        assert (status, body) == (200, {"baseUrl": c.url})
        conn = http.client.HTTPConnection("::1", c.port, timeout=10)
        try:
            conn.request("GET", "/api/logs", headers={"Host": "evil.example"})
            response = conn.getresponse()
            response.read()
            assert response.status == 403
        finally:
            conn.close()


class _SlowStorage(Storage):
    """A store whose insert waits until the collector is stopping, and a little more."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.stopping = threading.Event()
        self.entered = threading.Event()

    def insert(self, records: Sequence[Record]) -> int:
        self.entered.set()
        self.stopping.wait(10)
        time.sleep(0.2)
        return super().insert(records)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.01)


def test_stop_finishes_batches_in_flight_and_refuses_new_ones(tmp_path: Path) -> None:
    """stop() waits for a batch whose body is being read and one being stored (202, kept);
    a batch arriving on a kept-alive connection meanwhile gets 503 (the SDK retries it)."""
    db = tmp_path / "drain.sqlite3"
    storage = _SlowStorage(db)
    c = Collector(storage).start()
    reading, storing, late = (marked_logs(uuid.uuid4().hex, n) for n in (2, 3, 4))
    keep_alive = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    keep_alive.request("GET", "/healthz")
    assert keep_alive.getresponse().read()
    # A batch whose body is half sent ...
    body = json.dumps(reading).encode()
    head = (
        f"POST /v1/request HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth('k')}\r\n"
        f"Content-Type: application/json\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    slow_client = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    slow_client.sendall(head + body[:100])
    _wait_until(lambda: c._active == 1, "the half-sent batch counts as active")
    # ... and one being stored.
    answers: list[tuple[int, Any]] = []
    poster = threading.Thread(target=lambda: answers.append(post(c.url, storing, key="k")))
    poster.start()
    assert storage.entered.wait(10)
    stopper = threading.Thread(target=c.stop)
    stopper.start()
    _wait_until(c._stop.is_set, "stop() began")
    storage.stopping.set()
    try:
        keep_alive.request(
            "POST", "/v1/request", json.dumps(late), {"Authorization": auth("k"), "Content-Type": "application/json"}
        )
        refused = keep_alive.getresponse()
        assert refused.status == 503 and refused.getheader("Retry-After")
        assert "stopping" in json.loads(refused.read())["error"]
        slow_client.sendall(body[100:])
        answer = b"".join(iter(lambda: slow_client.recv(65536), b""))
        assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
        assert answer.endswith(b'{"accepted":2,"stored":2}')
        poster.join(10)
        assert answers == [(202, {"accepted": 3, "stored": 3})]
        stopper.join(15)
        assert not stopper.is_alive()
        assert c._pruner is not None and not c._pruner.is_alive()
    finally:
        storage.stopping.set()
        slow_client.close()
        keep_alive.close()
        stopper.join(15)
    again = Storage(db)
    try:
        assert {log["_id"] for log in again.full_logs()} == {log["_id"] for log in reading + storing}
    finally:
        again.close()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_max_batch_mb_must_be_positive(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--max-batch-mb 0 made every batch a 413."""
    db = tmp_path / "never.sqlite3"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["serve", "--port", "0", "--db", str(db), "--max-batch-mb", value])
    assert exit_info.value.code == 2
    assert "--max-batch-mb: must be a number > 0" in capsys.readouterr().err
    assert not db.exists()


# -- figures, filters and export (a collector of their own) ---------------------------


@pytest.fixture(scope="module")
def figures(new_db: Callable[[str], str]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An in-process collector holding known logs, over real HTTP."""
    db = new_db("figures")
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


def test_concurrent_ingestion_from_several_processes(server: Server, marker: str, new_db: Callable[[str], str]) -> None:
    """Several app processes post at once, to two collector processes sharing one database."""
    db = new_db("shared")
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


def test_retention(new_db: Callable[[str], str]) -> None:
    db = new_db("r")
    srv = collector(db, "--max-rows", "10", "--max-age-days", "1", "--prune-interval", "0")
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
    srv = collector(db, "--max-rows", "3")
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
    # How many requests the demo sends depends on its timing (a documentation link fetch).
    counts = re.search(r"Sent (\d+) requests .*?; (\d+) logs arrived at the collector", out)
    assert counts is not None, out
    assert int(counts[1]) == int(counts[2]) > 0, out
    assert '"password":"[REDACTED 28]"' in out and "the secret appears nowhere" in out
    assert "GET /countdown" in out and "Transfer-Encoding: chunked" in out
    assert "Dashboard: http://127.0.0.1:" in out
