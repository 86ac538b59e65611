"""The Flask extension ``ReadMeMetrics`` under gunicorn, with the real stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from readme_metrics.webhooks import sign
from tests.apps.flask_ext_app import FILE_BYTES, WEBHOOK_SECRET
from tests.integration import entry, header_value, no_log, one_log, request_body, response_body, send
from tests.servers import Server, gunicorn
from tests.standin import MetricsStandIn

DOCS = "https://docs.example.test/logs/"


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


@pytest.fixture(scope="module")
def server(api: MetricsStandIn) -> Iterator[Server]:
    srv = gunicorn("tests.apps.flask_ext_app:app", {"README_METRICS_SERVER": api.url})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def bare() -> Iterator[Server]:
    srv = gunicorn("tests.apps.flask_ext_app:bare")
    yield srv
    srv.stop()


def strip_doc_header(raw: bytes) -> bytes:
    return b"\r\n".join(line for line in raw.split(b"\r\n") if not line.lower().startswith(b"x-documentation-url:"))


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_every_method_body_logged(api: MetricsStandIn, server: Server, bare: Server, method: str) -> None:
    body = json.dumps({"method": method, "name": "Zoë"}).encode()
    headers = {"Content-Type": "application/json", "X-Api-Key": "key-flask-1234"}
    response, rid = send(server, method, "/echo", body, headers)
    expected, _ = send(bare, method, "/echo", body, headers)
    assert response.body == body
    assert strip_doc_header(response.without_date()) == expected.without_date()
    log = one_log(api, server, rid)
    assert request_body(log) == body
    assert response_body(log) == body
    assert entry(log)["request"]["method"] == method
    assert log["group"]["label"] == "flask.wrappers.Request"  # the grouping function got Flask's request
    assert log["group"]["id"].endswith("1234")
    assert response.header("x-documentation-url") == DOCS + log["_id"]


def test_stream_with_context(api: MetricsStandIn, server: Server, bare: Server) -> None:
    response, rid = send(server, "GET", "/stream?who=flask")
    expected, _ = send(bare, "GET", "/stream?who=flask")
    text = b"".join(f"line {i} of flask\n".encode() for i in range(4))
    assert response.body == text
    assert strip_doc_header(response.without_date()) == expected.without_date()
    log = one_log(api, server, rid)
    assert response_body(log) == text
    assert entry(log)["_completed"] is True


def test_send_file(api: MetricsStandIn, server: Server, bare: Server) -> None:
    response, rid = send(server, "GET", "/file")
    expected, _ = send(bare, "GET", "/file")
    assert response.body == FILE_BYTES
    assert strip_doc_header(response.without_date()) == expected.without_date()
    log = one_log(api, server, rid)
    assert response_body(log) == FILE_BYTES
    assert entry(log)["response"]["bodySize"] == len(FILE_BYTES)


def test_documentation_header_is_the_log_id(api: MetricsStandIn, server: Server) -> None:
    response, rid = send(server, "GET", "/ping")
    log = one_log(api, server, rid)
    link = DOCS + log["_id"]
    assert response.header("x-documentation-url") == link
    # The log shows the response the client got: with the link.
    assert header_value(entry(log)["response"]["headers"], "x-documentation-url") == link


def test_app_own_documentation_header_kept(api: MetricsStandIn, server: Server) -> None:
    response, rid = send(server, "GET", "/has-doc-header")
    values = [v for k, v in response.headers if k.lower() == "x-documentation-url"]
    assert values == ["https://mine.example.test/own"]
    one_log(api, server, rid)


def test_not_logged_gets_no_header(api: MetricsStandIn, server: Server) -> None:
    response, rid = send(server, "GET", "/ping", headers={"X-No-Log": "1"})
    assert response.body == b"pong"
    assert response.header("x-documentation-url") is None
    no_log(api, server, rid)


def test_webhook_endpoint(api: MetricsStandIn, server: Server) -> None:
    body = json.dumps({"email": "zoë@example.test"}, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "ReadMe-Signature": sign(body, WEBHOOK_SECRET)}
    response, _ = send(server, "POST", "/webhook", body, headers)
    assert response.status_line.startswith(b"HTTP/1.1 200")
    assert json.loads(response.body)["keys"][0]["apiKey"] == "k-zoë@example.test"
    bad = {**headers, "ReadMe-Signature": sign(body, "wrong-secret")}
    response, _ = send(server, "POST", "/webhook", body, bad)
    assert response.status_line.startswith(b"HTTP/1.1 401")
    assert b"Invalid Signature" in response.body
    response, _ = send(server, "POST", "/webhook", body, {"Content-Type": "application/json"})
    assert b"Missing Signature" in response.body
