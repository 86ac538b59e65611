"""The ``x-documentation-url`` base URL learned with ``GET /v1`` (issues 15 and 20): asked
again soon after an outage, and never a header unless it is a clean http(s) URL."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import Client

from readme_metrics import MetricsApiConfig, MetricsMiddleware
from readme_metrics.capture import BodyCopy, Capture
from readme_metrics.config import MAX_BASE_URL, clean_base_url
from readme_metrics.doclink import RETRY_OUTAGE_MAX, DocLink
from tests.standin import MetricsStandIn


def group_of(request: Any) -> dict[str, str]:
    return {"api_key": "doclink-key-1234", "label": "Doclink"}


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def capture() -> Capture:
    return Capture("GET", "http", "h", "/", "", "HTTP/1.1", None, [], BodyCopy(0), BodyCopy(0))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_a_failed_ask(link: DocLink) -> None:
    """Until the first ask for the base URL has failed (the next one is then scheduled)."""
    deadline = time.monotonic() + 10
    while link._next_attempt == 0.0:
        assert time.monotonic() < deadline, "the base URL was not asked for"
        time.sleep(0.02)


@pytest.fixture
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


def test_a_metrics_server_down_at_start_up_gives_the_header_soon_after_it_is_back() -> None:
    """Before: the first failure postponed the next ask by ten minutes."""
    port = free_port()  # nothing listens there yet: connection refused
    config = MetricsApiConfig("test-api-key", group_of, metrics_server=f"http://127.0.0.1:{port}")
    middleware = MetricsMiddleware(hello, config)
    client = Client(middleware)
    try:
        with client.get("/") as response:
            assert response.data == b"hello" and "x-documentation-url" not in response.headers
        wait_for_a_failed_ask(middleware.doclink)
        assert middleware.doclink._next_attempt - time.monotonic() <= RETRY_OUTAGE_MAX
        with MetricsStandIn(port=port) as api:  # the server comes back
            api.base_url = "https://docs.example.test"
            back = time.monotonic()
            link = None
            while link is None:
                assert time.monotonic() - back < 15, "the header did not come back within 15 s"
                with client.get("/") as response:
                    link = response.headers.get("x-documentation-url")
                time.sleep(0.1)
            assert link.startswith("https://docs.example.test/logs/")
            assert middleware.client.flush(timeout=10)
    finally:
        middleware.client.close()


BAD_BASES = [
    "https://docs.example.test\r\nSet-Cookie: session=stolen",
    "https://docs.example.test\nX-Injected: 1",
    "https://docs.example.test/\x00",
    "https://docs.example.test/caf\u00e9",  # latin-1, not ASCII
    "https://d\u043ecs.example.test",  # a Cyrillic o
    "https://docs.example.test/\u2028",
    "https://docs.example.test/a b",
    "https://docs.example.test/" + "a" * MAX_BASE_URL,
    "javascript:alert(1)",
    "ftp://docs.example.test",
    "https://",
    "https:///no-host",
    "//docs.example.test",
    "",
]


@pytest.mark.parametrize("base", BAD_BASES)
def test_an_unusable_base_url_never_becomes_a_header(api: MetricsStandIn, base: str) -> None:
    api.base_url = base
    link = DocLink(MetricsApiConfig("test-api-key", group_of, metrics_server=api.url))
    assert link.header(capture()) is None
    wait_for_a_failed_ask(link)
    assert link.base is None and link.header(capture()) is None
    # A refusal, not an outage: not asked again soon.
    assert link._next_attempt - time.monotonic() > RETRY_OUTAGE_MAX


def test_a_response_carries_no_injected_header(api: MetricsStandIn) -> None:
    """End to end through the WSGI middleware: the CR/LF answer changes nothing on the response."""
    api.base_url = "https://docs.example.test\r\nSet-Cookie: session=stolen"
    middleware = MetricsMiddleware(hello, MetricsApiConfig("test-api-key", group_of, metrics_server=api.url))
    client = Client(middleware)
    try:
        deadline = time.monotonic() + 10
        while middleware.doclink._next_attempt == 0.0:
            with client.get("/") as response:
                assert response.data == b"hello"
                assert list(response.headers.items()) == [("Content-Type", "text/plain")]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with client.get("/") as response:
            assert list(response.headers.items()) == [("Content-Type", "text/plain")]
    finally:
        middleware.client.close()


def test_a_clean_base_url_is_used(api: MetricsStandIn) -> None:
    api.base_url = "https://docs.example.test:8443/hub/"
    link = DocLink(MetricsApiConfig("test-api-key", group_of, metrics_server=api.url))
    link.header(capture())
    deadline = time.monotonic() + 10
    while link.base is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    c = capture()
    assert link.header(c) == f"https://docs.example.test:8443/hub/logs/{c.log_id}"


def test_base_log_url_follows_the_same_rule() -> None:
    for base in BAD_BASES[:8]:
        with pytest.raises(ValueError, match="base_log_url"):
            MetricsApiConfig("key", group_of, base_log_url=base)
    assert MetricsApiConfig("key", group_of, base_log_url="http://127.0.0.1:8787/").base_log_url == (
        "http://127.0.0.1:8787"
    )


def _is_safe_header_value(value: str) -> bool:
    return all(0x21 <= ord(ch) <= 0x7E for ch in value)


@given(st.text(max_size=300), st.sampled_from(["", "http://", "https://", "https://docs.example.test"]))
def test_whatever_the_answer_the_base_is_safe_or_refused(tail: str, head: str) -> None:
    base = clean_base_url(head + tail)
    if base is not None:
        header = f"{base}/logs/{uuid.uuid4()}"
        assert _is_safe_header_value(header)
        assert base.startswith(("http://", "https://")) and len(base) <= MAX_BASE_URL
        header.encode("latin-1")  # what the ASGI adapter does with it


_SAFE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~/%:@!$&'()*+,;=?#", max_size=200)


@given(
    st.sampled_from(["http", "https"]), st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){1,2}", fullmatch=True), _SAFE
)
def test_ordinary_urls_are_accepted(scheme: str, host: str, path: str) -> None:
    url = f"{scheme}://{host}/{path}"
    assert clean_base_url(url) == url.rstrip("/")
