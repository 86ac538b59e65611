"""Property: for any response chunking, status, way of reading the request body and body
bound, the wrapped WSGI app answers exactly what the bare app answers, the app reads
exactly what the client sent, and the log holds exactly the bytes that passed (cut at
``max_body_bytes``, with the true sizes)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client as WerkzeugClient

from readme_metrics import MetricsApiConfig
from readme_metrics.wsgi import WsgiMetricsMiddleware
from tests.standin import MetricsStandIn, entry, with_header


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


def make_app(chunks: list[bytes], status: int, reads: list[int], use_write: bool, generator: bool) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        seen = bytearray()
        for n in reads:
            seen += stream.readline() if n < 0 else stream.read(n)
        seen += stream.read()
        write = start_response(
            f"{status} STATUS", [("Content-Type", "application/octet-stream"), ("X-Seen", str(len(seen)))]
        )
        parts = [*chunks, bytes(seen)]
        if use_write:
            write(parts.pop(0))
        return (p for p in parts) if generator else parts

    return app


def call(app: Any, body: bytes, test_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = {"Content-Type": "application/octet-stream", "X-Test-Id": test_id}
    with WerkzeugClient(app).post("/t?x=1", data=body, headers=headers) as response:
        return response.status_code, list(response.headers.items()), response.get_data()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunks=st.lists(st.binary(max_size=400), max_size=6),
    status=st.sampled_from([200, 201, 204, 400, 404, 500, 503]),
    body=st.binary(max_size=3000),
    reads=st.lists(st.integers(min_value=-1, max_value=700), max_size=8),
    use_write=st.booleans(),
    generator=st.booleans(),
    max_body=st.integers(min_value=0, max_value=2500),
)
def test_wsgi_is_transparent_and_logs_what_passed(
    api: MetricsStandIn,
    chunks: list[bytes],
    status: int,
    body: bytes,
    reads: list[int],
    use_write: bool,
    generator: bool,
    max_body: int,
) -> None:
    app = make_app(chunks, status, reads, use_write, generator)
    config = MetricsApiConfig(
        "test-api-key", lambda r: {"api_key": "k-0001"}, metrics_server=api.url, max_body_bytes=max_body
    )
    wrapped = WsgiMetricsMiddleware(app, config)
    test_id = str(uuid.uuid4())

    expected = call(app, body, test_id)
    got = call(wrapped, body, test_id)
    assert got == expected
    assert dict(got[1])["X-Seen"] == str(len(body))  # the app read the whole body, unchanged

    assert wrapped.client.flush(timeout=10)
    wrapped.client.close()
    (log,) = api.matching(with_header("X-Test-Id", test_id))
    e = entry(log)
    response_bytes = got[2]
    assert e["response"]["status"] == status
    assert e["response"]["bodySize"] == len(response_bytes)
    content = e["response"]["content"]
    kept = base64.b64decode(content["text"]) if content.get("encoding") == "base64" else content["text"].encode()
    assert kept == response_bytes[:max_body]
    assert bool(content.get("_truncated")) == (len(response_bytes) > max_body)
    assert e["request"]["bodySize"] == len(body)
    if body and max_body:
        post = e["request"]["postData"]
        sent = base64.b64decode(post["text"]) if post.get("encoding") == "base64" else post["text"].encode()
        assert sent == body[:max_body]
