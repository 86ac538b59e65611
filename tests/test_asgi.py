"""The ASGI middleware end to end: a FastAPI app and a plain Starlette app under uvicorn,
bare and wrapped, side by side, with the real metrics stand-in. For every kind of exchange:
the client gets the same bytes as without the SDK, and exactly one correct log arrives.

The FastAPI app is wrapped with ``add_middleware(MetricsMiddleware, config=...)`` and an
``async def`` grouping function; the Starlette app with ``MetricsMiddleware(app, config)``
and a plain one. Protocol edge cases (websocket and lifespan pass-through, cancellation,
trailers, ...) are driven in-process at the end of this file by a raw ASGI "server".
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from readme_metrics import MetricsApiConfig, MetricsMiddleware
from readme_metrics._asgi_request import AsgiRequest
from readme_metrics.asgi import AsgiMetricsMiddleware
from tests.apps.asgi_apps import SSE, STREAM
from tests.servers import Server, raw_request, uvicorn
from tests.standin import MetricsStandIn, entry, header_value, with_header

# The scenarios shared with the WSGI tests run here as well, against this module's servers
# (pytest resolves their ``servers`` and ``api`` fixtures in this module).
from tests.test_wsgi import (  # noqa: F401
    content_bytes,
    exchange,
    only_log,
    test_binary_response,
    test_empty_responses,
    test_every_method_with_a_body,
    test_form_body_becomes_params,
    test_grouping_function_that_raises,
    test_grouping_none_skips_the_log,
    test_multipart_upload,
    test_one_megabyte_json,
    test_sdk_user_agent_and_auth,
)

Servers = tuple[Server, Server]


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


@pytest.fixture(scope="module", params=["fastapi", "starlette"])
def servers(request: pytest.FixtureRequest, api: MetricsStandIn) -> Iterator[Servers]:
    env = {"README_METRICS_SERVER": api.url}
    bare = uvicorn(f"tests.apps.asgi_apps:{request.param}_bare", env)
    try:
        wrapped = uvicorn(f"tests.apps.asgi_apps:{request.param}_wrapped", env)
    except BaseException:
        bare.stop()
        raise
    yield bare, wrapped
    bare.stop()
    wrapped.stop()


def timed_stream(port: int, path: str, first_marker: bytes, test_id: str) -> tuple[float, float, bytes]:
    """(seconds to the first body chunk, seconds to the end, raw bytes) on a raw socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        start = time.monotonic()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Test-Id: {test_id}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while first_marker not in data:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the first chunk"
            data += chunk
        first_at = time.monotonic() - start
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return first_at, time.monotonic() - start, data


# -- the scenario matrix, under uvicorn ------------------------------------------------


def test_get_json(servers: Servers, api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "GET", "/json?a=1&b=&a=2&who=Bob", {"X-Api-Key": "owner-key-9876"})
    log = only_log(api, servers[1].port, test_id)
    e = entry(log)
    assert e["request"]["method"] == "GET"
    assert e["request"]["url"] == f"http://127.0.0.1:{servers[1].port}/json?a=1&b=&a=2&who=Bob"
    assert e["request"]["httpVersion"] == "HTTP/1.1"
    assert e["request"]["queryString"][:3] == [
        {"name": "a", "value": "1"},
        {"name": "b", "value": ""},
        {"name": "a", "value": "2"},
    ]
    assert header_value(e["request"]["headers"], "x-test-id") == test_id
    assert e["response"]["status"] == 200
    assert e["response"]["statusText"] == "OK"
    assert json.loads(e["response"]["content"]["text"]) == json.loads(response.body) == {"hello": "world", "n": 1}
    assert e["response"]["content"]["mimeType"] == "application/json"
    assert e["response"]["bodySize"] == len(response.body)
    assert log["group"]["id"].startswith("sha512-") and log["group"]["id"].endswith("?9876")
    assert log["group"]["label"] == "Bob"  # the grouping function read the query through its request object
    assert log["clientIPAddress"] == "127.0.0.1"
    assert e["_completed"] is True
    assert e["time"] >= e["timings"]["wait"] >= 0
    assert e["timings"]["receive"] >= 0
    assert e["startedDateTime"].endswith("Z") and len(e["startedDateTime"]) == 24


def test_chunked_binary_upload(servers: Servers, api: MetricsStandIn) -> None:
    body = bytes(range(256)) * 40
    headers = {"Content-Type": "application/octet-stream"}
    response, test_id = exchange(servers, "POST", "/echo", headers, body, chunked=True)
    assert response.body == body
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["request"]["postData"]["encoding"] == "base64"
    assert content_bytes(e["request"]["postData"]) == body
    assert e["request"]["bodySize"] == len(body)
    assert content_bytes(e["response"]["content"]) == body


def test_head(servers: Servers, api: MetricsStandIn) -> None:
    response, test_id = exchange(servers, "HEAD", "/json")
    assert response.status_line.startswith(b"HTTP/1.1 200")
    assert response.body == b""
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["request"]["method"] == "HEAD"
    assert e["response"]["status"] == 200
    assert e["response"]["bodySize"] == 0  # what the client got, not what the app wrote


def test_repeated_response_headers(servers: Servers, api: MetricsStandIn) -> None:
    _, test_id = exchange(servers, "GET", "/headers")
    headers = entry(only_log(api, servers[1].port, test_id))["response"]["headers"]
    assert [h["value"] for h in headers if h["name"].lower() == "x-repeat"] == ["one", "two"]


@pytest.mark.parametrize(("path", "chunks"), [("/stream", STREAM), ("/sse", SSE)], ids=["stream", "sse"])
def test_streamed_response_is_not_buffered(
    servers: Servers, api: MetricsStandIn, path: str, chunks: list[bytes]
) -> None:
    response, test_id = exchange(servers, "GET", path)
    assert response.body == b"".join(chunks)
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["response"]["content"]["text"] == response.body.decode()
    assert e["timings"]["receive"] >= 700  # the body took ~800 ms to produce
    assert e["timings"]["wait"] < 400
    # Through the middleware, the first chunk arrives at once, long before the last one.
    first_at, total, raw = timed_stream(servers[1].port, path, chunks[0], str(uuid.uuid4()))
    assert raw.endswith(b"0\r\n\r\n")
    assert first_at < 0.15 and total >= 0.8


def test_exception_is_logged_as_500_and_reraised(servers: Servers, api: MetricsStandIn) -> None:
    wrapped = servers[1]
    before = json.loads(raw_request(wrapped.port, "GET", "/count").body)["boom"]
    response, test_id = exchange(servers, "GET", "/boom")
    assert response.status_line.startswith(b"HTTP/1.1 500")
    after = json.loads(raw_request(wrapped.port, "GET", "/count").body)["boom"]
    assert after == before + 1  # the app ran once
    e = entry(only_log(api, wrapped.port, test_id))
    assert e["response"]["status"] == 500
    assert e["response"]["statusText"] == "Internal Server Error"


def test_the_app_runs_once_per_request(servers: Servers) -> None:
    port = servers[1].port
    calls = [json.loads(raw_request(port, "GET", "/count").body)["calls"] for _ in range(3)]
    assert calls[1] == calls[0] + 1 and calls[2] == calls[1] + 1


def test_client_disconnect_mid_stream(servers: Servers, api: MetricsStandIn) -> None:
    test_id = str(uuid.uuid4())
    with socket.create_connection(("127.0.0.1", servers[1].port)) as sock:
        sock.sendall(f"GET /slow HTTP/1.1\r\nHost: x\r\nX-Test-Id: {test_id}\r\n\r\n".encode())
        received = 0
        while received < 200_000:
            received += len(sock.recv(65536))
    e = entry(only_log(api, servers[1].port, test_id))
    assert e["_completed"] is False
    assert e["response"]["status"] == 200
    assert 0 < e["response"]["bodySize"] < 400 * 65536


# -- lifespan and graceful stop, under uvicorn ----------------------------------------


@pytest.mark.parametrize("app", ["fastapi_wrapped", "starlette_wrapped"])
def test_graceful_stop_delivers_what_is_queued(api: MetricsStandIn, tmp_path: Path, app: str) -> None:
    # buffer_length 50 and a long flush interval: the 5 events only leave at shutdown.
    # uvicorn re-raises SIGTERM once it has stopped, so the process dies without running
    # atexit handlers: what delivers them is the middleware's flush at lifespan shutdown.
    marker = tmp_path / "lifespan.txt"
    env = {
        "README_METRICS_SERVER": api.url,
        "RM_BUFFER_LENGTH": "50",
        "RM_FLUSH_INTERVAL": "60",
        "RM_LIFESPAN_MARKER": str(marker),
    }
    server = uvicorn(f"tests.apps.asgi_apps:{app}", env)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    try:
        for test_id in ids:
            assert raw_request(server.port, "GET", "/json", {"X-Test-Id": test_id}).body == b'{"hello":"world","n":1}'
        time.sleep(0.3)
        assert not any(api.matching(with_header("X-Test-Id", i)) for i in ids)  # still queued
    finally:
        output = server.stop()
    assert "Application shutdown complete" in output
    for test_id in ids:
        assert len(api.wait_for(with_header("X-Test-Id", test_id), timeout=5)) == 1
    # The wrapped app's own lifespan ran: its startup and shutdown handlers fired.
    assert marker.read_text() == "startup\nshutdown\n"


# -- the protocol in-process: a raw ASGI "server" driving the middleware ---------------


@pytest.fixture
def config(api: MetricsStandIn) -> MetricsApiConfig:
    # No documentation link: it would appear on responses once the stand-in answered
    # ``GET /v1`` in the background, and these tests compare the messages sent.
    return MetricsApiConfig(
        "test-api-key", None, metrics_server=api.url, flush_interval=0.01, documentation_header=False
    )


def http_scope(test_id: str, method: str = "GET", path: str = "/x", **extra: Any) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"q=1",
        "headers": [(b"host", b"example.test"), (b"x-test-id", test_id.encode())],
        "client": ("10.0.0.7", 5555),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


class Peer:
    """The server side of one ASGI call: scripted ``receive`` messages, recorded ``send``s."""

    def __init__(self, incoming: list[dict[str, Any]] | None = None, fail_send: BaseException | None = None) -> None:
        self.incoming = list(incoming or [{"type": "http.request", "body": b"", "more_body": False}])
        self.sent: list[Any] = []
        self.fail_send = fail_send

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.Event().wait()  # like a server: wait until the client goes
        raise AssertionError("unreachable")

    async def send(self, message: Any) -> None:
        if self.fail_send is not None:
            raise self.fail_send
        self.sent.append(message)


def respond(status: int = 200, body: bytes = b"ok", **start: Any) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    return app


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_dispatch_and_constructor_forms(config: MetricsApiConfig) -> None:
    app = respond()
    assert isinstance(MetricsMiddleware(app, config), AsgiMetricsMiddleware)
    assert isinstance(MetricsMiddleware(app=app, config=config), AsgiMetricsMiddleware)

    from fastapi import FastAPI

    from readme_metrics.fastapi import ReadMeMetricsMiddleware

    for cls in (MetricsMiddleware, ReadMeMetricsMiddleware):
        fastapi_app = FastAPI()
        fastapi_app.add_middleware(cls, config=config)
        stack = fastapi_app.build_middleware_stack()
        found = []
        node: Any = stack
        while node is not None:
            found.append(type(node))
            node = getattr(node, "app", None)
        assert any(issubclass(t, AsgiMetricsMiddleware) for t in found)


def test_messages_pass_as_the_same_objects(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    bodies = [{"type": "http.response.body", "body": b"a", "more_body": True}, {"type": "http.response.body"}]
    incoming = [
        {"type": "http.request", "body": b"he", "more_body": True},
        {"type": "http.request", "body": b"llo", "more_body": False},
    ]
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())
        await send(start)
        for message in bodies:
            await send(message)

    peer = Peer(incoming)
    expected_in = list(incoming)
    run(MetricsMiddleware(app, config)(http_scope(test_id, "POST"), peer.receive, peer.send))
    assert len(seen) == 2 and all(a is b for a, b in zip(seen, expected_in, strict=True))
    assert len(peer.sent) == 3 and all(a is b for a, b in zip(peer.sent, [start, *bodies], strict=True))
    e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
    assert e["request"]["url"] == "http://example.test/x?q=1"
    assert e["request"]["postData"]["text"] == "hello"
    assert e["response"]["content"]["text"] == "a"
    assert e["_completed"] is True


def test_websocket_and_unknown_scopes_pass_untouched(config: MetricsApiConfig) -> None:
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append((scope, receive, send))

    middleware = MetricsMiddleware(app, config)
    for kind in ("websocket", "something-new"):
        peer = Peer()
        scope = {"type": kind, "path": "/ws", "headers": []}
        run(middleware(scope, peer.receive, peer.send))
        assert got[-1][0] is scope
        assert got[-1][1] == peer.receive and got[-1][2] == peer.send  # the server's own callables


def test_lifespan_passes_through_and_flushes_at_shutdown(api: MetricsStandIn) -> None:
    config = MetricsApiConfig("test-api-key", None, metrics_server=api.url, buffer_length=50, flush_interval=60)
    test_id = str(uuid.uuid4())
    inner = respond()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await inner(scope, receive, send)
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    middleware = MetricsMiddleware(app, config)
    delivered_at_complete: list[bool] = []
    startup, shutdown = {"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}

    async def main() -> None:
        peer = Peer([startup, shutdown])
        lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
        await middleware(http_scope(test_id), Peer().receive, Peer().send)
        assert not api.matching(with_header("x-test-id", test_id))  # queued: buffer_length 50

        async def server_send(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                delivered_at_complete.append(bool(api.matching(with_header("x-test-id", test_id))))
            await peer.send(message)

        await middleware(lifespan_scope, peer.receive, server_send)
        assert peer.sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]

    run(main())
    assert delivered_at_complete == [True]


def test_exception_before_start_is_a_500_and_the_same_exception(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())
    error = ValueError("nope")
    calls = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        raise error

    with pytest.raises(ValueError) as raised:
        run(MetricsMiddleware(app, config)(http_scope(test_id), Peer().receive, Peer().send))
    assert raised.value is error and calls == [1]
    e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
    assert e["response"]["status"] == 500 and e["_completed"] is False
    assert "ValueError: nope" in e["comment"]


def test_app_returning_without_a_response_is_a_500(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    run(MetricsMiddleware(app, config)(http_scope(test_id), Peer().receive, Peer().send))
    e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
    assert e["response"]["status"] == 500 and e["_completed"] is False


def test_cancellation_yields_one_incomplete_log(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await asyncio.sleep(30)

    async def main() -> None:
        task = asyncio.ensure_future(MetricsMiddleware(app, config)(http_scope(test_id), Peer().receive, Peer().send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
    assert e["_completed"] is False and e["response"]["status"] == 200
    assert e["response"]["content"]["text"] == "part"
    assert "CancelledError" in e["comment"]


def test_send_failure_is_a_disconnect(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())

    class ClientDisconnectedError(OSError):
        pass

    gone = ClientDisconnectedError()
    with pytest.raises(ClientDisconnectedError) as raised:
        run(MetricsMiddleware(respond(), config)(http_scope(test_id), Peer().receive, Peer(fail_send=gone).send))
    assert raised.value is gone
    e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
    assert e["_completed"] is False and e["response"]["status"] == 200  # what the app tried to send


def test_disconnect_seen_on_receive(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        assert (await receive())["type"] == "http.disconnect"
        # gives up without the last body message

    peer = Peer([{"type": "http.disconnect"}])
    run(MetricsMiddleware(app, config)(http_scope(test_id), peer.receive, peer.send))
    logs = api.wait_for(with_header("x-test-id", test_id))
    assert len(logs) == 1 and entry(logs[0])["_completed"] is False


def test_trailers_end_the_response(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())
    ended_before_trailers: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        await asyncio.sleep(0.2)
        ended_before_trailers.append(bool(api.matching(with_header("x-test-id", test_id))))
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")]})

    peer = Peer()
    run(MetricsMiddleware(app, config)(http_scope(test_id), peer.receive, peer.send))
    assert [m["type"] for m in peer.sent][-1] == "http.response.trailers"
    assert ended_before_trailers == [False]
    assert entry(api.wait_for(with_header("x-test-id", test_id))[0])["_completed"] is True


def test_headers_given_as_a_generator_still_reach_the_server(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = ((k, v) for k, v in [(b"content-type", b"text/plain"), (b"x-a", b"1")])
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    peer = Peer()
    run(MetricsMiddleware(app, config)(http_scope(test_id), peer.receive, peer.send))
    assert list(peer.sent[0]["headers"]) == [(b"content-type", b"text/plain"), (b"x-a", b"1")]
    e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
    assert header_value(e["response"]["headers"], "x-a") == "1"


def test_concurrent_requests_keep_their_own_state(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for byte in body:
            await send({"type": "http.response.body", "body": bytes([byte]), "more_body": True})
            await asyncio.sleep(0.001)
        await send({"type": "http.response.body", "body": b""})

    middleware = MetricsMiddleware(app, config)
    ids = [str(uuid.uuid4()) for _ in range(20)]

    async def main() -> None:
        calls = []
        for i, test_id in enumerate(ids):
            peer = Peer([{"type": "http.request", "body": f"body-{i}".encode()}])
            calls.append(middleware(http_scope(test_id, "POST"), peer.receive, peer.send))
        await asyncio.gather(*calls)

    run(main())
    for i, test_id in enumerate(ids):
        e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
        assert e["request"]["postData"]["text"] == e["response"]["content"]["text"] == f"body-{i}"


def test_grouping_gets_a_request_without_the_body(
    api: MetricsStandIn, monkeypatch: pytest.MonkeyPatch, config: MetricsApiConfig
) -> None:
    import readme_metrics._asgi_request as request_module

    seen: list[Any] = []

    async def group(request: Any) -> Any:
        seen.append(request)
        return {"api_key": request.headers["x-test-id"], "label": request.query_params.get("q")}

    for starlette in (True, False):
        if not starlette:  # as if Starlette were not installed
            monkeypatch.setattr(request_module, "_starlette_request", False)
        cfg = MetricsApiConfig("test-api-key", group, metrics_server=api.url, flush_interval=0.01)
        test_id = str(uuid.uuid4())
        scope = http_scope(test_id, "POST", "/app/items", root_path="/app")
        peer = Peer([{"type": "http.request", "body": b"payload"}])
        run(MetricsMiddleware(respond(), cfg)(scope, peer.receive, peer.send))
        log = api.wait_for(with_header("x-test-id", test_id))[0]
        assert log["group"]["label"] == "1" and log["group"]["id"].endswith(test_id[-4:])
        assert entry(log)["request"]["postData"]["text"] == "payload"  # the app still got the body
        request = seen[-1]
        assert request.method == "POST" and request.client.host == "10.0.0.7"
        assert str(request.url) == "http://example.test/app/items?q=1"
        assert request.url.path == "/app/items" and request.scope is scope
        assert isinstance(request, AsgiRequest) != starlette


def test_old_style_root_path_is_joined(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())
    scope = http_scope(test_id, path="/items", root_path="/api", headers=[(b"x-test-id", test_id.encode())])
    run(MetricsMiddleware(respond(), config)(scope, Peer().receive, Peer().send))
    e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
    assert e["request"]["url"] == "http://127.0.0.1:8000/api/items?q=1"  # no Host header: the server address


def test_requests_not_logged_reach_the_app_untouched(api: MetricsStandIn) -> None:
    config = MetricsApiConfig("test-api-key", None, metrics_server=api.url, exclude_paths=["/health"])
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append((receive, send))

    peer = Peer()
    run(MetricsMiddleware(app, config)(http_scope("h", path="/health"), peer.receive, peer.send))
    assert got == [(peer.receive, peer.send)]


def test_non_ascii_path_is_percent_encoded_as_utf8(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    test_id = str(uuid.uuid4())
    scope = http_scope(test_id, path="/café/✓", raw_path=b"/caf%C3%A9/%E2%9C%93")
    run(MetricsMiddleware(respond(), config)(scope, Peer().receive, Peer().send))
    e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
    assert e["request"]["url"] == "http://example.test/caf%C3%A9/%E2%9C%93?q=1"


def test_disconnect_while_the_last_message_is_sent_leaves_the_log_complete(
    api: MetricsStandIn, config: MetricsApiConfig
) -> None:
    # A server may report the client's going (``http.disconnect``) while the last body
    # message is still being sent: the response is complete, and so is the log.
    test_id = str(uuid.uuid4())
    sent_last = asyncio.Event()
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def listen() -> None:
            while True:
                kind = (await receive())["type"]
                seen.append(kind)
                if kind == "http.disconnect":
                    return

        listener = asyncio.ensure_future(listen())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": False})
        await listener
        # Still the same single log after the app returns.

    async def receive() -> dict[str, Any]:
        await sent_last.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            sent_last.set()  # the client goes while this message is on its way
            await asyncio.sleep(0.01)

    run(MetricsMiddleware(app, config)(http_scope(test_id), receive, send))
    assert seen == ["http.disconnect"]  # the app did see the disconnect
    logs = api.wait_for(with_header("x-test-id", test_id))
    e = entry(logs[0])
    assert e["_completed"] is True and e["response"]["content"]["text"] == "x"
    only_one_log(api, config, test_id)


def test_body_read_after_the_response_is_not_added_to_the_log(api: MetricsStandIn, config: MetricsApiConfig) -> None:
    # Once the last message went out the capture is the worker's: a body chunk the app
    # reads afterwards still reaches the app, but is not added (no race with the worker).
    test_id = str(uuid.uuid4())
    late: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        late.append((await receive())["body"])

    peer = Peer(
        [
            {"type": "http.request", "body": b"early", "more_body": True},
            {"type": "http.request", "body": b"late", "more_body": False},
        ]
    )
    run(MetricsMiddleware(app, config)(http_scope(test_id, "POST"), peer.receive, peer.send))
    assert late == [b"late"]
    e = entry(api.wait_for(with_header("x-test-id", test_id))[0])
    assert e["request"]["postData"]["text"] == "early" and e["request"]["bodySize"] == 5
    assert e["_completed"] is True


def test_a_failing_capture_serves_the_app_untouched(api: MetricsStandIn, caplog: pytest.LogCaptureFixture) -> None:
    # A bug in the capture code (here: a make_request override that raises) must not fail
    # the request: the app gets the server's own receive and send, and nothing is logged.
    class Broken(AsgiMetricsMiddleware):
        def make_request(self, scope: Any, host: str, path: str) -> Any:
            raise RuntimeError("capture bug")

    cfg = MetricsApiConfig(
        "test-api-key",
        lambda request: {"api_key": "k"},
        metrics_server=api.url,
        flush_interval=0.01,
        documentation_header=False,
    )
    got: list[Any] = []
    inner = respond(body=b"served")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append((receive, send))
        await inner(scope, receive, send)

    test_id = str(uuid.uuid4())
    peer = Peer()
    with caplog.at_level("WARNING", logger="readme_metrics"):
        run(Broken(app, cfg)(http_scope(test_id), peer.receive, peer.send))
    assert got == [(peer.receive, peer.send)]
    assert [m.get("body") for m in peer.sent] == [None, b"served"]
    assert "capture bug" in caplog.text
    assert only_one_log(api, cfg, test_id, expected=0) == []  # the same client: FIFO


def only_one_log(api: MetricsStandIn, config: MetricsApiConfig, test_id: str, expected: int = 1) -> list[Any]:
    """The logs of ``test_id`` once a later request's log arrived (the queue is FIFO, so
    a duplicate, or a log that should not exist, would have come first)."""
    sentinel = str(uuid.uuid4())
    run(MetricsMiddleware(respond(), config)(http_scope(sentinel), Peer().receive, Peer().send))
    api.wait_for(with_header("x-test-id", sentinel))
    logs = api.matching(with_header("x-test-id", test_id))
    assert len(logs) == expected
    return logs


def test_documentation_link_names_the_log(api: MetricsStandIn) -> None:
    cfg = MetricsApiConfig(
        "test-api-key", None, metrics_server=api.url, flush_interval=0.01, base_log_url="https://docs.example.test"
    )
    test_id = str(uuid.uuid4())
    peer = Peer()
    run(MetricsMiddleware(respond(), cfg)(http_scope(test_id), peer.receive, peer.send))
    links = [v for k, v in peer.sent[0]["headers"] if k.lower() == b"x-documentation-url"]
    log = api.wait_for(with_header("x-test-id", test_id))[0]
    assert links == [f"https://docs.example.test/logs/{log['_id']}".encode()]
    assert header_value(entry(log)["response"]["headers"], "x-documentation-url") == links[0].decode()
