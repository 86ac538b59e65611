"""Django's ``MetricsMiddleware`` under gunicorn (WSGI) and uvicorn (ASGI), with the real stand-in.

Each server runs the same project with the middleware and without it (``RM_BARE=1``): the
client's bytes must be the same but for ``x-documentation-url``.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator

import pytest

from tests.apps.django_project.urls import FILE_BYTES
from tests.integration import entry, header_value, no_log, one_log, request_body, response_body, send
from tests.servers import RawResponse, Server, gunicorn, uvicorn
from tests.standin import MetricsStandIn

DOCS = "https://docs.example.test/logs/"
APPS = {
    "gunicorn": "tests.apps.django_project.wsgi:application",
    "uvicorn": "tests.apps.django_project.asgi:application",
}
REQUEST_CLASS = {"gunicorn": "WSGIRequest", "uvicorn": "ASGIRequest"}


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def servers(request: pytest.FixtureRequest, api: MetricsStandIn) -> Iterator[tuple[str, Server, Server]]:
    start = gunicorn if request.param == "gunicorn" else uvicorn
    wrapped = start(APPS[request.param], {"README_METRICS_SERVER": api.url})
    bare = start(APPS[request.param], {"RM_BARE": "1"})
    yield request.param, wrapped, bare
    wrapped.stop()
    bare.stop()


def same_bytes(response: RawResponse, bare: RawResponse) -> None:
    lines = response.without_date().split(b"\r\n")
    assert b"\r\n".join(x for x in lines if not x.lower().startswith(b"x-documentation-url:")) == bare.without_date()


def exchange(
    servers: tuple[str, Server, Server], method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[RawResponse, str]:
    _, wrapped, bare = servers
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    response, rid = send(wrapped, method, path, body, hdrs)
    expected, _ = send(bare, method, path, body, hdrs)
    same_bytes(response, expected)
    return response, rid


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_body_read_by_the_view(api: MetricsStandIn, servers: tuple[str, Server, Server], method: str) -> None:
    kind, wrapped, _ = servers
    body = json.dumps({"name": "Zoë 日本", "method": method}, ensure_ascii=False).encode()
    response, rid = exchange(servers, method, "/echo", body, Content_Type="application/json", X_Api_Key="dj-key-9876")
    assert response.body == body
    log = one_log(api, wrapped, rid)
    assert request_body(log) == body
    assert response_body(log) == body
    assert log["group"]["label"].endswith(REQUEST_CLASS[kind])  # the grouping function got Django's request
    assert log["group"]["id"].endswith("9876")
    assert response.header("x-documentation-url") == DOCS + log["_id"]
    assert header_value(entry(log)["response"]["headers"], "x-documentation-url") == DOCS + log["_id"]


def test_form_and_upload(api: MetricsStandIn, servers: tuple[str, Server, Server]) -> None:
    _, wrapped, _ = servers
    response, rid = exchange(
        servers, "POST", "/form", b"a=1&b=z%C3%B6", Content_Type="application/x-www-form-urlencoded"
    )
    assert json.loads(response.body) == {"form": {"a": "1", "b": "zö"}, "files": {}}
    params = entry(one_log(api, wrapped, rid))["request"]["postData"]["params"]
    assert params == [{"name": "a", "value": "1"}, {"name": "b", "value": "zö"}]

    boundary = "XyZ"
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="x.bin"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + bytes(range(256))
        + f"\r\n--{boundary}--\r\n".encode()
    )
    ctype = f"multipart/form-data; boundary={boundary}"
    response, rid = exchange(servers, "POST", "/form", multipart, Content_Type=ctype)
    assert json.loads(response.body) == {"form": {}, "files": {"f": 256}}
    logged = entry(one_log(api, wrapped, rid))["request"]
    assert logged["bodySize"] == len(multipart)
    assert "x.bin" in json.dumps(logged["postData"])  # the upload was copied as the view parsed it


def test_body_the_view_ignored(api: MetricsStandIn, servers: tuple[str, Server, Server]) -> None:
    name, wrapped, _ = servers
    response, rid = exchange(servers, "POST", "/ignore", b"unread payload", Content_Type="text/plain")
    assert response.body == b"did not read it"
    log = one_log(api, wrapped, rid)
    assert entry(log)["request"]["bodySize"] == len(b"unread payload")
    if name == "gunicorn":  # a socket: never read after the view (a client could hold the worker)
        assert b"unread payload" not in json.dumps(log).encode()
    else:  # Django's ASGI handler buffered the body: read for the log
        assert request_body(log) == b"unread payload"


@pytest.mark.parametrize("path", ["/stream", "/astream"])
def test_streaming_response(api: MetricsStandIn, servers: tuple[str, Server, Server], path: str) -> None:
    _, wrapped, _ = servers
    response, rid = exchange(servers, "GET", path)
    kind = "sync" if path == "/stream" else "async"
    text = b"".join(f"{kind} chunk {i}\n".encode() for i in range(4))
    assert response.body == text
    log = one_log(api, wrapped, rid)
    assert response_body(log) == text
    assert entry(log)["_completed"] is True


def test_file_response(api: MetricsStandIn, servers: tuple[str, Server, Server]) -> None:
    _, wrapped, _ = servers
    response, rid = exchange(servers, "GET", "/file")
    assert response.body == FILE_BYTES
    log = one_log(api, wrapped, rid)
    assert response_body(log) == FILE_BYTES
    assert entry(log)["response"]["bodySize"] == len(FILE_BYTES)


def test_view_error_logged_as_500(api: MetricsStandIn, servers: tuple[str, Server, Server]) -> None:
    _, wrapped, _ = servers
    response, rid = exchange(servers, "GET", "/boom")
    assert response.status_line.startswith(b"HTTP/1.1 500")
    assert entry(one_log(api, wrapped, rid))["response"]["status"] == 500


def test_cookies_in_logged_headers(api: MetricsStandIn, servers: tuple[str, Server, Server]) -> None:
    _, wrapped, _ = servers
    _, rid = exchange(servers, "GET", "/cookie")
    headers = entry(one_log(api, wrapped, rid))["response"]["headers"]
    # Present (cookies are redacted by default: send_cookies=False).
    assert header_value(headers, "set-cookie") is not None


def test_not_logged(api: MetricsStandIn, servers: tuple[str, Server, Server]) -> None:
    _, wrapped, _ = servers
    response, rid = exchange(servers, "GET", "/ping", X_No_Log="1")
    assert response.body == b"pong"
    assert response.header("x-documentation-url") is None
    no_log(api, wrapped, rid)


def test_async_skip_hook(api: MetricsStandIn, servers: tuple[str, Server, Server]) -> None:
    kind, wrapped, _ = servers
    response, rid = send(wrapped, "GET", "/ping", headers={"X-Async-Skip": "1"})
    assert response.body == b"pong"
    if kind == "uvicorn":  # awaited in the event loop: the request is skipped
        assert response.header("x-documentation-url") is None
        no_log(api, wrapped, rid)
    else:  # an async skip hook cannot run under WSGI: ignored (with a warning), logged
        assert response.header("x-documentation-url") == DOCS + one_log(api, wrapped, rid)["_id"]


def test_client_disconnect_mid_stream(api: MetricsStandIn, servers: tuple[str, Server, Server]) -> None:
    _, wrapped, _ = servers
    rid = uuid.uuid4().hex
    with socket.create_connection(("127.0.0.1", wrapped.port), timeout=15) as sock:
        sock.sendall(f"GET /slow HTTP/1.1\r\nHost: x\r\nX-Req-Id: {rid}\r\n\r\n".encode())
        received = 0
        while received < 200_000:
            chunk = sock.recv(65536)
            assert chunk
            received += len(chunk)
    e = entry(one_log(api, wrapped, rid))  # exactly one, though the stream was abandoned
    assert e["_completed"] is False
    assert e["response"]["status"] == 200
    assert 0 < e["response"]["bodySize"] < 400 * 65536


def test_non_ascii_path_is_percent_encoded_utf8(api: MetricsStandIn, servers: tuple[str, Server, Server]) -> None:
    _, wrapped, _ = servers
    response, rid = exchange(servers, "GET", "/caf%C3%A9/%E2%9C%93?q=%C3%A9")
    assert response.status_line.startswith(b"HTTP/1.1 404")
    e = entry(one_log(api, wrapped, rid))
    assert e["request"]["url"] == f"http://127.0.0.1:{wrapped.port}/caf%C3%A9/%E2%9C%93?q=%C3%A9"


@pytest.fixture(scope="module")
def no_body(servers: tuple[str, Server, Server], api: MetricsStandIn) -> Iterator[Server]:
    """The same kind of server, with ``log_body=False``."""
    kind = servers[0]
    server = (gunicorn if kind == "gunicorn" else uvicorn)(
        APPS[kind], {"README_METRICS_SERVER": api.url, "RM_LOG_BODY": "0"}
    )
    yield server
    server.stop()


def test_file_response_without_body_logging(api: MetricsStandIn, no_body: Server) -> None:
    # With log_body=False a FileResponse is left alone (the server may send the file itself):
    # the log still has its status, headers and size, and no body.
    response, rid = send(no_body, "GET", "/file")
    assert response.status_line.startswith(b"HTTP/1.1 200") and response.body == FILE_BYTES
    log = one_log(api, no_body, rid)
    e = entry(log)
    assert e["response"]["bodySize"] == len(FILE_BYTES)
    assert e["response"]["content"].get("text", "") == ""  # no body kept
    assert e["_completed"] is True
    assert response.header("x-documentation-url") == DOCS + log["_id"]
