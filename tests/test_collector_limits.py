"""The collector against hostile input (issue 15, "The collector"; issue 20, refused batches).

Every test talks to a real collector on 127.0.0.1: a ``readme-metrics serve`` subprocess,
or a :class:`Collector` on a thread when the test must hold connections open or read the
collector's log records.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import math
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from readme_metrics.collector import Collector, Storage
from readme_metrics.collector.ingest import json_cost
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


# -- 2. What parsing a batch costs, and how many are parsed at once ----------------------


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
def test_a_small_gzip_of_many_values_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """63 KiB of gzip, 64 MiB of ``[],``: 21 million lists once took the collector to 1.7 GiB."""
    srv = collector(tmp_path / "bomb.sqlite3")  # default limits
    try:
        before = _peak_rss_kib(srv.proc.pid)
        bomb = b"[" + b"[]," * (21 * 1024 * 1024) + b"[]]"
        status, answer = post(srv.url, None, raw=bomb, compress=True, key="k")
        grown = _peak_rss_kib(srv.proc.pid) - before
        # The bytes (64 MiB decompressed, 64 MiB of structure counted): about 125 MiB, no objects.
        assert grown < 256 * 1024, f"peak RSS grew by {grown // 1024} MiB ({status} {answer})"
        assert status == 413, answer
        assert "values" in answer["error"], answer
        assert post(srv.url, [make_log()], key="k")[0] == 202
    finally:
        srv.stop()


def _cost(value: Any) -> int:
    """The documented cost: 1 per value and per object key; an empty array or object costs 2."""
    if isinstance(value, list):
        return 1 + sum(_cost(v) for v in value) if value else 2
    if isinstance(value, dict):
        return 1 + sum(1 + _cost(v) for v in value.values()) if value else 2
    return 1


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


# Strings full of what a naive count would take for structure: brackets, commas, colons,
# quotes and backslashes (escaped in the JSON text).
_tricky_text = st.text(alphabet=st.sampled_from('[]{},:"\\ aé\n'), max_size=12)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _tricky_text,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(_tricky_text, inner, max_size=5),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(value=_json_values, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 0, 2]))
def test_the_cost_is_counted_on_the_bytes_exactly(value: Any, ensure_ascii: bool, indent: int | None) -> None:
    """The count the collector makes before parsing equals the documented cost of the value."""
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode()
    assert json_cost(text, 10**9) == (_cost(value), _depth(value))


MAX_VALUES, MAX_DEPTH = 150, 11


@pytest.fixture(scope="module")
def small_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("small") / "logs.sqlite3"
    srv = collector(db, "--max-batch-values", str(MAX_VALUES), "--max-batch-depth", str(MAX_DEPTH))
    yield srv
    srv.stop()


@PROPERTY
@given(extra=_json_values, gzipped=st.booleans(), indent=st.sampled_from([None, 1]))
def test_a_batch_is_refused_exactly_when_it_costs_too_much(
    small_limits: Server, extra: Any, gzipped: bool, indent: int | None
) -> None:
    """A generated extra field in a log: 413 iff values or depth pass the limits, else 202."""
    marker = uuid.uuid4().hex
    log = make_log(url=f"http://api.test/cost?m={marker}")
    # In a header object, 9 levels down: a generated value 3 deep passes MAX_DEPTH.
    log["request"]["log"]["entries"][0]["request"]["headers"][0]["_extra"] = extra
    batch = [log]
    status, answer = post(small_limits.url, None, raw=json.dumps(batch, indent=indent).encode(), compress=gzipped)
    too_costly = _cost(batch) > MAX_VALUES or _depth(batch) > MAX_DEPTH
    assert status == (413 if too_costly else 202), (answer, _cost(batch), _depth(batch))
    assert count_marked(small_limits.url, marker) == (0 if too_costly else 1)


def test_deep_nesting_is_refused_before_parsing(server: Server) -> None:
    """100,000 levels: the parser's recursion once decided (400, "not JSON"); now the bound does."""
    status, answer = post(server.url, None, raw=b"[" * 100_000 + b"]" * 100_000, key=KEY)
    assert status == 413, answer
    assert "deeper than 64 levels" in answer["error"], answer  # the default


def _hold_an_ingest(port: int) -> socket.socket:
    """A batch whose headers are sent and whose body never ends: it holds an ingest."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        (
            f"POST /v1/request HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth('k')}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n["
        ).encode()
    )
    return sock


def _within(seconds: float, attempt: Callable[[], tuple[Any, ...]], wanted: int) -> tuple[Any, ...]:
    """Call ``attempt()`` (-> (status, ...)) until its status is ``wanted`` or time is up."""
    deadline = time.monotonic() + seconds
    while True:
        result = attempt()
        if result[0] == wanted or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def test_concurrent_ingests_are_bounded(tmp_path: Path) -> None:
    """Past ``--max-concurrent-ingests`` (default 4) a batch gets 503 + Retry-After at once."""
    srv = collector(tmp_path / "busy.sqlite3")  # the default bound
    held = [_hold_an_ingest(srv.port) for _ in range(4)]
    try:
        status, headers, answer = _within(
            10,
            lambda: exchange(
                srv.port, "POST", "/v1/request", {"Authorization": auth("k"), "Content-Type": _JSON}, b"[]"
            ),
            503,
        )
        assert status == 503, answer
        assert headers.get("retry-after", "").isdigit(), headers
        # Reads are not ingests: the dashboard still answers.
        assert get_json(srv.url, "/healthz")["ok"] is True
        # A held batch that finishes is stored as usual (its 999 remaining bytes) ...
        finishing = held.pop()
        finishing.sendall(b" " * 998 + b"]")
        assert finishing.recv(65536).startswith(b"HTTP/1.1 202 "), "the held batch was not accepted"
        finishing.close()
        # ... and its slot is free again.
        assert _within(10, lambda: post(srv.url, [make_log()], key="k"), 202)[0] == 202
    finally:
        for sock in held:
            sock.close()
        srv.stop()


# -- 3. Filters out of range and export filters of the wrong shape -----------------------

_numbers = st.one_of(
    st.floats(),  # NaN, infinities, 1e300, -0.0, subnormals
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from(["-1e300", "1e300", "1e308", "9" * 30, "nan", "-inf", "0x10", "1_000", "", " 5 "]),
)


def _in_range(text: str) -> bool:
    """What the docs promise to accept: a finite number of seconds from 0 to 253402300800."""
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and 0 <= value <= 253402300800


@PROPERTY
@given(since=_numbers, until=_numbers, route=st.sampled_from(["/api/summary", "/api/logs", "/api/export.har"]))
def test_time_filters_out_of_range_answer_400(server: Server, since: Any, until: Any, route: str) -> None:
    query = f"since={quote(str(since))}&until={quote(str(until))}"
    status, _, answer = exchange(server.port, "GET", f"{route}?{query}", {})
    ok = all(_in_range(str(v)) or str(v).strip() == "" for v in (since, until))
    assert status == (200 if ok else 400), (query, answer)


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_shapes = st.recursive(
    _json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
)
_filter_objects = st.dictionaries(
    st.sampled_from(["since", "until", "endpoint", "status", "group", "q", "bogus"]), _shapes, max_size=4
)


_FILTER_NAMES = {"since", "until", "endpoint", "status", "group", "q", "meta_key", "meta_value", "direction", "parent"}


def _well_formed(request: Any) -> bool:
    """The documented export request: an object with ``ids`` (strings) or ``filters`` (an
    object of filter names to strings or numbers), not both; null is absent."""
    if not isinstance(request, dict) or not set(request) <= {"ids", "filters"}:
        return False
    ids, filters = request.get("ids"), request.get("filters")
    if ids is not None and filters is not None:
        return False
    if ids is not None:
        return isinstance(ids, list) and all(isinstance(i, str) for i in ids)
    if filters is not None:
        return (
            isinstance(filters, dict)
            and set(filters) <= _FILTER_NAMES
            and all(
                v is None or (isinstance(v, str | int | float) and not isinstance(v, bool)) for v in filters.values()
            )
        )
    return True


@PROPERTY
@given(
    request=st.one_of(
        st.fixed_dictionaries({"filters": _shapes | _filter_objects}),
        st.fixed_dictionaries({"ids": _shapes}),
        st.fixed_dictionaries({"ids": st.lists(st.text(max_size=8), max_size=3)}),
        _shapes,
    )
)
def test_export_requests_of_any_shape_answer_200_or_400(server: Server, request: Any) -> None:
    body = json.dumps(request).encode()
    status, _, answer = exchange(server.port, "POST", "/api/export.har", {"Content-Type": _JSON}, body)
    assert status in (200, 400), (request, answer)
    if not _well_formed(request):
        assert status == 400, (request, answer)


@pytest.mark.parametrize(
    "request_body",
    [
        {"filters": {"q": "\ud800"}},
        {"filters": {"endpoint": "GET /\udfff"}},
        {"ids": ["\ud800"]},
        {"filters": {"since": -1e300}},
        {"filters": {"until": 1e300}},
        {"filters": [1]},
        {"filters": "since=0"},
        {"filters": {"since": [0]}},
        {"ids": [None]},
    ],
)
def test_export_table_of_bad_requests(server: Server, request_body: Any) -> None:
    body = json.dumps(request_body).encode()  # lone surrogates travel as \\ud800 escapes
    status, _, answer = exchange(server.port, "POST", "/api/export.har", {"Content-Type": _JSON}, body)
    assert status == 400, answer


# -- 4. Refused batches are logged, rate-limited -----------------------------------------


def test_refused_batches_are_logged_once_a_minute(tmp_path: Path) -> None:
    srv = collector(tmp_path / "keys.sqlite3", "--api-key", "the-right-key")
    try:
        for _ in range(30):
            assert post(srv.url, [make_log()], key="a-wrong-key")[0] == 401
        assert post(srv.url, [make_log()], key="the-right-key")[0] == 202
    finally:
        out = srv.stop()
    lines = [line for line in out.splitlines() if "refused a batch" in line]
    assert len(lines) == 1, out
    assert "401" in lines[0] and "unknown API key" in lines[0] and "127.0.0.1" in lines[0], lines
    assert "a-wrong-key" not in out  # the key itself is not logged


def test_refusal_log_counts_what_it_held_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = Collector(Storage(tmp_path / "c.sqlite3"), api_keys=["right"], refusal_log_every=0.5).start()
    try:
        with caplog.at_level(logging.WARNING, logger="readme_metrics"):
            for _ in range(5):
                assert post(c.url, [make_log()], key="wrong")[0] == 401
            time.sleep(0.6)
            assert post(c.url, [make_log()], key="wrong")[0] == 401
    finally:
        c.stop()
    refused = [r.getMessage() for r in caplog.records if "refused a batch" in r.getMessage()]
    assert len(refused) == 2, refused
    assert re.search(r"\b4 similar warnings suppressed", refused[1]), refused
