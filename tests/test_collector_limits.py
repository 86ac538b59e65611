"""The collector against hostile input (issue 15, "The collector"; issue 20, refused batches).

Every test talks to a real collector on 127.0.0.1: a ``readme-metrics serve`` subprocess,
or a :class:`Collector` on a thread when the test must hold connections open or read the
collector's log records.
"""

from __future__ import annotations

import gzip
import http.client
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.collector_rig import auth, collector, get_json, make_log, post
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)

KEY = "limits-key"
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = collector(tmp_path_factory.mktemp("limits") / "logs.sqlite3", "--api-key", KEY)
    # Logs over a few minutes, so that the summary computes its series of buckets.
    now = time.time()
    assert post(srv.url, [make_log(started=now - 300 + i) for i in range(0, 300, 30)], key=KEY)[0] == 202
    yield srv
    srv.stop()


def exchange(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    """One request with exactly these headers (``Host`` too, when given); status, headers, JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    try:
        return response.status, answer_headers, json.loads(payload)
    except ValueError:
        return response.status, answer_headers, payload.decode(errors="replace")


def count_marked(base: str, marker: str) -> int:
    return int(get_json(base, f"/api/logs?q={marker}")["total"])


# -- 1. Host, Origin and Content-Type on what writes -------------------------------------

_JSON = "application/json"
# (name, request headers over a valid authenticated batch, expected status). ``{port}`` is
# the collector's port. What the SDKs send: application/json, maybe gzip, no Origin.
_INGEST_HEADERS: list[tuple[str, dict[str, str], int]] = [
    ("sdk", {"Content-Type": _JSON}, 202),
    ("sdk gzip", {"Content-Type": _JSON, "Content-Encoding": "gzip"}, 202),
    ("json with charset", {"Content-Type": "Application/JSON; charset=utf-8"}, 202),
    ("localhost host", {"Host": "localhost:{port}", "Content-Type": _JSON}, 202),
    ("ipv6 loopback host", {"Host": "[::1]:{port}", "Content-Type": _JSON}, 202),
    ("own origin", {"Origin": "http://127.0.0.1:{port}", "Content-Type": _JSON}, 202),
    # DNS rebinding: the page's own name in Host (and Origin, which then matches it).
    ("rebinding host", {"Host": "evil.example:{port}", "Content-Type": _JSON}, 403),
    (
        "rebinding host and origin",
        {"Host": "evil.example:{port}", "Origin": "http://evil.example:{port}", "Content-Type": _JSON},
        403,
    ),
    ("rebinding ip host", {"Host": "192.0.2.7:{port}", "Content-Type": _JSON}, 403),
    # Cross-site pages: Host is the collector's, Origin is theirs.
    ("foreign origin", {"Origin": "http://evil.example", "Content-Type": _JSON}, 403),
    ("other local port", {"Origin": "http://127.0.0.1:3000", "Content-Type": _JSON}, 403),
    ("https twin origin", {"Origin": "https://127.0.0.1:{port}", "Content-Type": _JSON}, 403),
    ("null origin", {"Origin": "null", "Content-Type": _JSON}, 403),
    # What a browser posts cross-site without a preflight.
    ("text/plain", {"Content-Type": "text/plain;charset=UTF-8"}, 415),
    ("form", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ("multipart", {"Content-Type": "multipart/form-data; boundary=x"}, 415),
    ("no content type", {}, 415),
    ("text/plain gzip", {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, 415),
    ("json lookalike", {"Content-Type": "application/jsonx"}, 415),
]


@pytest.mark.parametrize(("headers", "expected"), [c[1:] for c in _INGEST_HEADERS], ids=[c[0] for c in _INGEST_HEADERS])
def test_ingest_host_origin_and_content_type(server: Server, headers: dict[str, str], expected: int) -> None:
    marker = uuid.uuid4().hex
    body = json.dumps([make_log(url=f"http://api.test/guard?m={marker}")]).encode()
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.compress(body)
    sent = {k: v.format(port=server.port) for k, v in headers.items()}
    status, _, answer = exchange(server.port, "POST", "/v1/request", {**sent, "Authorization": auth(KEY)}, body)
    assert status == expected, answer
    assert count_marked(server.url, marker) == (1 if expected == 202 else 0)


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1", {"Host": "evil.example:{port}"}),
        ("POST", "/api/export.har", {"Host": "evil.example:{port}", "Content-Type": _JSON}),
        ("POST", "/api/export.har", {"Origin": "http://evil.example", "Content-Type": _JSON}),
        ("POST", "/api/export.har", {"Content-Type": "text/plain"}),
    ],
    ids=["v1 rebinding", "export rebinding", "export foreign origin", "export text/plain"],
)
def test_other_routes_follow_the_same_rules(server: Server, method: str, path: str, headers: dict[str, str]) -> None:
    sent = {k: v.format(port=server.port) for k, v in headers.items()}
    body = b'{"ids": []}' if method == "POST" else None
    status, _, answer = exchange(server.port, method, path, {**sent, "Authorization": auth(KEY)}, body)
    assert status in (403, 415), answer
    # The dashboard's own export (same origin, JSON) still works.
    own = {"Origin": f"http://127.0.0.1:{server.port}", "Content-Type": _JSON}
    assert exchange(server.port, "POST", "/api/export.har", own, b'{"ids": []}')[0] == 200
