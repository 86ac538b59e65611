"""The WSGI middleware end to end: a Flask app under gunicorn, bare and wrapped, side by side,
with the real metrics stand-in. For every kind of exchange: the client gets the same bytes
as without the SDK, and exactly one correct log arrives."""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.apps.flask_app import BIG, BINARY
from tests.servers import Server, gunicorn, raw_request
from tests.standin import MetricsStandIn, entry, header_value, with_header


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


@pytest.fixture(scope="module")
def servers(api: MetricsStandIn) -> Iterator[tuple[Server, Server]]:
    env = {"README_METRICS_SERVER": api.url}
    bare = gunicorn("tests.apps.flask_app:bare", env)
    wrapped = gunicorn("tests.apps.flask_app:wrapped", env)
    yield bare, wrapped
    bare.stop()
    wrapped.stop()


def only_log(api: MetricsStandIn, port: int, test_id: str) -> dict[str, Any]:
    """The one log of request ``test_id``; a sentinel request proves no second one follows
    (delivery is FIFO, so a duplicate would arrive before the sentinel's log)."""
    api.wait_for(with_header("X-Test-Id", test_id))
    sentinel = f"sentinel-{uuid.uuid4()}"
    raw_request(port, "GET", "/json", {"X-Test-Id": sentinel})
    api.wait_for(with_header("X-Test-Id", sentinel))
    logs = api.matching(with_header("X-Test-Id", test_id))
    assert len(logs) == 1, f"{len(logs)} logs for one request"
    return logs[0]


def exchange(
    servers: tuple[Server, Server],
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    chunked: bool = False,
) -> tuple[Any, str]:
    """The same request to the bare and the wrapped app; asserts identical bytes."""
    bare, wrapped = servers
    test_id = str(uuid.uuid4())
    hdrs = {**(headers or {}), "X-Test-Id": test_id}
    expected = raw_request(bare.port, method, path, hdrs, body, chunked=chunked)
    got = raw_request(wrapped.port, method, path, hdrs, body, chunked=chunked)
    assert got.without_date() == expected.without_date()
    return got, test_id


def content_bytes(content: dict[str, Any]) -> bytes:
    if content.get("encoding") == "base64":
        return base64.b64decode(content["text"])
    return str(content["text"]).encode()


def test_get_json(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "GET", "/json?a=1&b=&a=2", {"X-Api-Key": "owner-key-9876"})
    log = only_log(api, servers[1].port, test_id)
    e = entry(log)
    assert e["request"]["method"] == "GET"
    assert e["request"]["url"] == f"http://127.0.0.1:{servers[1].port}/json?a=1&b=&a=2"
    assert e["request"]["queryString"] == [
        {"name": "a", "value": "1"},
        {"name": "b", "value": ""},
        {"name": "a", "value": "2"},
    ]
    assert e["response"]["status"] == 200
    assert e["response"]["statusText"] == "OK"
    assert json.loads(e["response"]["content"]["text"]) == json.loads(response.body)
    assert e["response"]["content"]["mimeType"] == "application/json"
    assert e["response"]["bodySize"] == len(response.body)
    assert log["group"]["id"].startswith("sha512-") and log["group"]["id"].endswith("?9876")
    assert "owner-key-9876" not in log["group"]["id"]
    assert log["group"]["label"] == "Tester"
    assert log["clientIPAddress"] == "127.0.0.1"
    assert e["_completed"] is True
    assert e["time"] >= e["timings"]["wait"] >= 0
    assert e["startedDateTime"].endswith("Z") and len(e["startedDateTime"]) == 24


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_every_method_with_a_body(servers: tuple[Server, Server], api: MetricsStandIn, method: str) -> None:
    body = json.dumps({"method": method, "nested": {"list": [1, 2, 3]}, "text": "héllo"}).encode()
    response, test_id = exchange(servers, method, "/echo", {"Content-Type": "application/json"}, body)
    assert response.body == body
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["request"]["method"] == method
    assert e["request"]["postData"]["mimeType"] == "application/json"
    assert json.loads(e["request"]["postData"]["text"]) == json.loads(body)
    assert e["request"]["bodySize"] == len(body)
    assert e["response"]["status"] == 201
    assert json.loads(e["response"]["content"]["text"]) == json.loads(body)


def test_chunked_upload(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    body = b"".join(b"line %d\n" % i for i in range(2000))
    response, test_id = exchange(servers, "POST", "/raw/read-n", {"Content-Type": "text/plain"}, body, chunked=True)
    assert response.body == body
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["request"]["postData"]["text"] == body.decode()
    assert e["request"]["bodySize"] == len(body)


@pytest.mark.parametrize("path", ["/raw/readline", "/raw/iter", "/raw/read-n"])
def test_app_reads_of_wsgi_input(servers: tuple[Server, Server], api: MetricsStandIn, path: str) -> None:
    body = b"first line\nsecond line\n" + bytes(range(256)) + b"\nlast"
    response, test_id = exchange(servers, "POST", path, {"Content-Type": "application/octet-stream"}, body)
    assert response.body == body  # the app read exactly what was sent
    e = entry(only_log(api, servers[1].port, test_id))
    assert content_bytes(e["request"]["postData"]) == body
    assert e["request"]["postData"]["encoding"] == "base64"


def test_body_the_app_never_read_is_not_read_from_the_socket(
    servers: tuple[Server, Server], api: MetricsStandIn
) -> None:
    body = b'{"unread": true}'
    response, test_id = exchange(servers, "POST", "/raw/ignore", {"Content-Type": "application/json"}, body)
    assert response.body == b"ignored"
    request = entry(only_log(api, servers[1].port, test_id))["request"]
    assert request["bodySize"] == len(body)  # the declared size, and no text
    assert body.decode() not in json.dumps(request)


def test_a_client_that_never_sends_its_body_does_not_hold_the_log(
    servers: tuple[Server, Server], api: MetricsStandIn
) -> None:
    test_id = str(uuid.uuid4())
    with socket.create_connection(("127.0.0.1", servers[1].port), timeout=10) as sock:
        sock.sendall(
            f"POST /raw/ignore HTTP/1.1\r\nHost: x\r\nX-Test-Id: {test_id}\r\nContent-Length: 100000\r\n\r\n".encode()
        )
        received = b""
        while b"ignored" not in received:
            data = sock.recv(65536)
            assert data, "connection closed before the response"
            received += data
        # The body never comes, the connection stays open: the log must still arrive.
        (log,) = api.wait_for(with_header("X-Test-Id", test_id), timeout=5)
    assert entry(log)["request"]["bodySize"] == 100000


@pytest.fixture(scope="module")
def waitress_servers(api: MetricsStandIn) -> Iterator[tuple[Server, Server]]:
    from tests.integration import waitress

    env = {"README_METRICS_SERVER": api.url}
    bare = waitress("tests.apps.flask_app:bare", env)
    wrapped = waitress("tests.apps.flask_app:wrapped", env)
    yield bare, wrapped
    bare.stop()
    wrapped.stop()


def test_response_framed_by_len_stays_so(waitress_servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    response, test_id = exchange(waitress_servers, "GET", "/raw/no-length")
    assert response.header("Content-Length") == str(len(b"framed by len()"))  # not chunked
    assert entry(only_log(api, waitress_servers[1].port, test_id))["response"]["content"]["text"] == "framed by len()"


def test_unread_body_buffered_by_the_server_is_logged(
    waitress_servers: tuple[Server, Server], api: MetricsStandIn
) -> None:
    body = b'{"unread": true}'
    response, test_id = exchange(waitress_servers, "POST", "/raw/ignore", {"Content-Type": "application/json"}, body)
    assert response.body == b"ignored"
    post = entry(only_log(api, waitress_servers[1].port, test_id))["request"]["postData"]
    assert post["text"] == body.decode()


def test_form_body_becomes_params(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    body = b"name=Ada+Lovelace&empty=&lang=fr&lang=en"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response, test_id = exchange(servers, "POST", "/form", headers, body)
    assert json.loads(response.body)["form"]["name"] == "Ada Lovelace"
    post = entry(only_log(api, servers[1].port, test_id))["request"]["postData"]
    assert post["mimeType"] == "application/x-www-form-urlencoded"
    assert post["params"] == [
        {"name": "name", "value": "Ada Lovelace"},
        {"name": "empty", "value": ""},
        {"name": "lang", "value": "fr"},
        {"name": "lang", "value": "en"},
    ]


def test_multipart_upload(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nreport\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + bytes(range(256))
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response, test_id = exchange(servers, "POST", "/form", headers, body)
    assert json.loads(response.body) == {"form": {"title": "report"}, "files": {"file": 256}}
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["request"]["bodySize"] == len(body)
    assert e["request"]["postData"]["mimeType"].startswith("multipart/form-data")


def test_binary_response(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "GET", "/binary")
    assert response.body == BINARY
    content = entry(only_log(api, servers[1].port, test_id))["response"]["content"]
    assert content["encoding"] == "base64"
    assert base64.b64decode(content["text"]) == BINARY
    assert content["size"] == len(BINARY)


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/empty", 204), ("GET", "/not-modified", 304)])
def test_empty_responses(
    servers: tuple[Server, Server], api: MetricsStandIn, method: str, path: str, status: int
) -> None:
    response, test_id = exchange(servers, method, path)
    assert response.body == b""
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["response"]["status"] == status
    assert e["response"]["bodySize"] == 0
    assert e["response"]["content"]["text"] == ""


def test_head(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "HEAD", "/json")
    assert response.body == b""
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["request"]["method"] == "HEAD"
    assert e["response"]["status"] == 200


def test_one_megabyte_json(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "GET", "/big")
    assert response.body == BIG
    content = entry(only_log(api, servers[1].port, test_id))["response"]["content"]
    assert content["text"] == BIG.decode()
    assert content["size"] == len(BIG)


def test_write_callable(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "GET", "/raw/write")
    assert response.body == b"written and returned"
    content = entry(only_log(api, servers[1].port, test_id))["response"]["content"]
    assert content["text"] == "written and returned"


def test_repeated_response_headers(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    _, test_id = exchange(servers, "GET", "/headers")
    headers = entry(only_log(api, servers[1].port, test_id))["response"]["headers"]
    assert [h["value"] for h in headers if h["name"] == "X-Repeat"] == ["one", "two"]


def test_streamed_response_is_not_buffered(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "GET", "/stream")
    assert response.body == b"".join(f"chunk {i}\n".encode() for i in range(5))
    # Time to first byte through the middleware: the first chunk comes long before the last.
    test_id2 = str(uuid.uuid4())
    with socket.create_connection(("127.0.0.1", servers[1].port)) as sock:
        start = time.monotonic()
        sock.sendall(f"GET /stream HTTP/1.1\r\nHost: x\r\nX-Test-Id: {test_id2}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while b"chunk 0" not in received:
            data = sock.recv(65536)
            assert data, "connection closed before the first chunk"
            received += data
        first_at = time.monotonic() - start
        first = received
        while sock.recv(65536):
            pass
        total = time.monotonic() - start
    assert b"chunk 4" not in first  # the first chunk came alone, not with the whole body
    assert total >= 0.8 and first_at < total / 2
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["response"]["content"]["text"] == response.body.decode()
    assert e["timings"]["receive"] >= 700  # the body took ~800 ms to produce
    assert e["timings"]["wait"] < 400


def test_exception_is_logged_as_500_and_reraised(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    wrapped = servers[1]
    before = json.loads(raw_request(wrapped.port, "GET", "/raw/count").body).get("raw_raise", 0)
    response, test_id = exchange(servers, "GET", "/raw/raise")
    assert response.status_line.startswith(b"HTTP/1.1 500")
    after = json.loads(raw_request(wrapped.port, "GET", "/raw/count").body).get("raw_raise", 0)
    assert after == before + 1  # the app ran once
    e = entry(only_log(api, wrapped.port, test_id))
    assert e["response"]["status"] == 500
    assert "RuntimeError" in e["comment"]


def test_failure_midway_is_logged_incomplete(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    _, test_id = exchange(servers, "GET", "/raw/fail-midway")
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["response"]["status"] == 200  # the status had left
    assert e["_completed"] is False
    assert e["response"]["content"]["text"] == "first part"


def test_client_disconnect_mid_stream(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    test_id = str(uuid.uuid4())
    with socket.create_connection(("127.0.0.1", servers[1].port)) as sock:
        sock.sendall(f"GET /raw/slow HTTP/1.1\r\nHost: x\r\nX-Test-Id: {test_id}\r\n\r\n".encode())
        received = 0
        while received < 200_000:
            received += len(sock.recv(65536))
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["_completed"] is False
    assert 0 < e["response"]["bodySize"] < 2000 * 65536


def test_grouping_none_skips_the_log(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "GET", "/json", {"X-No-Log": "1"})
    assert response.status_line.startswith(b"HTTP/1.1 200")
    sentinel = str(uuid.uuid4())
    raw_request(servers[1].port, "GET", "/json", {"X-Test-Id": sentinel})
    api.wait_for(with_header("X-Test-Id", sentinel))
    assert api.matching(with_header("X-Test-Id", test_id)) == []


def test_grouping_function_that_raises(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "GET", "/json", {"X-Group-Boom": "1"})
    assert json.loads(response.body) == {"hello": "world", "n": 1}
    log = only_log(api, servers[1].port, test_id)
    assert log["group"]["id"] == "anonymous"


def test_sdk_user_agent_and_auth(servers: tuple[Server, Server], api: MetricsStandIn) -> None:
    _, test_id = exchange(servers, "GET", "/json")
    only_log(api, servers[1].port, test_id)
    post = api.posts[-1]
    assert post.headers["user-agent"].startswith("readme-metrics-python@")
    assert post.headers["authorization"] == "Basic " + base64.b64encode(b"test-api-key:").decode()
    assert header_value(entry(api.logs[-1])["request"]["headers"], "Host") is not None


def test_graceful_stop_delivers_what_is_queued(api: MetricsStandIn) -> None:
    # buffer_length 50 and a long flush interval: the 5 events only leave at shutdown.
    env = {"README_METRICS_SERVER": api.url, "RM_BUFFER_LENGTH": "50", "RM_FLUSH_INTERVAL": "60"}
    server = gunicorn("tests.apps.flask_app:wrapped", env)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    try:
        for test_id in ids:
            raw_request(server.port, "GET", "/json", {"X-Test-Id": test_id})
        time.sleep(0.3)
        assert not any(api.matching(with_header("X-Test-Id", i)) for i in ids)  # still queued
    finally:
        server.stop()
    for test_id in ids:
        assert len(api.wait_for(with_header("X-Test-Id", test_id), timeout=5)) == 1
