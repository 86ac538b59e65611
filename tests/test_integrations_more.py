"""Falcon and Bottle (WSGI) under waitress, Quart under hypercorn and Litestar under uvicorn.

Every framework runs with and without the middleware; the client's bytes must be the same
but for ``x-documentation-url``, and each request arrives at the stand-in exactly once.
Falcon's link base is learned from the metrics server's ``GET /v1`` in the background;
Bottle's app turns the header off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.integration import entry, hypercorn, one_log, request_body, response_body, send, waitress
from tests.servers import RawResponse, Server, uvicorn
from tests.standin import MetricsStandIn

FETCHED_BASE = "https://fetched.example.test"


@dataclass
class Setup:
    name: str
    wrapped: Server
    bare: Server
    stream_text: bytes
    docs: str | None  # the link base, None: no header expected


FRAMEWORKS: dict[str, tuple[Callable[..., Server], str, bytes, str | None]] = {
    "falcon-waitress": (waitress, "falcon", b"".join(f"falcon {i}\n".encode() for i in range(5)), FETCHED_BASE),
    "bottle-waitress": (waitress, "bottle", b"".join(f"bottle {i}\n".encode() for i in range(5)), None),
    "quart-hypercorn": (
        hypercorn,
        "quart",
        b"".join(f"quart {i}\n".encode() for i in range(5)),
        "https://docs.example.test",
    ),
    "litestar-uvicorn": (
        uvicorn,
        "litestar",
        b"".join(json.dumps({"i": i}).encode() + b"\n" for i in range(5)),
        "https://docs.example.test",
    ),
}


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        standin.base_url = FETCHED_BASE  # what GET /v1 answers
        yield standin


@pytest.fixture(scope="module", params=list(FRAMEWORKS))
def setup(request: pytest.FixtureRequest, api: MetricsStandIn) -> Iterator[Setup]:
    start, name, stream_text, docs = FRAMEWORKS[request.param]
    wrapped = start(f"tests.apps.other_apps:{name}_app", {"README_METRICS_SERVER": api.url})
    bare = start(f"tests.apps.other_apps:{name}_bare")
    yield Setup(request.param, wrapped, bare, stream_text, docs)
    wrapped.stop()
    bare.stop()


def without_link(response: RawResponse) -> bytes:
    lines = response.without_date().split(b"\r\n")
    return b"\r\n".join(x for x in lines if not x.lower().startswith(b"x-documentation-url:"))


def exchange(setup: Setup, method: str, path: str, body: bytes | None = None, **hdrs: str) -> tuple[RawResponse, str]:
    headers = {k.replace("_", "-"): v for k, v in hdrs.items()}
    response, rid = send(setup.wrapped, method, path, body, headers)
    expected, _ = send(setup.bare, method, path, body, headers)
    assert without_link(response) == expected.without_date()
    return response, rid


def test_echo_body(api: MetricsStandIn, setup: Setup) -> None:
    body = json.dumps({"name": "Zoë 日本", "fw": setup.name}, ensure_ascii=False).encode()
    response, rid = exchange(setup, "POST", "/echo", body, Content_Type="application/json", X_Api_Key="fw-key-4321")
    assert response.body == body
    log = one_log(api, setup.wrapped, rid)
    assert request_body(log) == body
    assert response_body(log) == body
    assert log["group"]["id"].endswith("4321")
    assert entry(log)["response"]["status"] == 200


def test_streamed_response(api: MetricsStandIn, setup: Setup) -> None:
    response, rid = exchange(setup, "GET", "/stream")
    assert response.body == setup.stream_text
    log = one_log(api, setup.wrapped, rid)
    assert response_body(log) == setup.stream_text
    assert entry(log)["_completed"] is True


def test_documentation_link(api: MetricsStandIn, setup: Setup) -> None:
    response, rid = exchange(setup, "GET", "/ping")
    deadline = time.monotonic() + 10
    # A fetched base arrives in the background: the first responses may go without it.
    while setup.docs == FETCHED_BASE and response.header("x-documentation-url") is None:
        assert time.monotonic() < deadline, "the base URL was never fetched"
        time.sleep(0.05)
        response, rid = exchange(setup, "GET", "/ping")
    log = one_log(api, setup.wrapped, rid)
    if setup.docs is None:
        assert response.header("x-documentation-url") is None
    else:
        assert response.header("x-documentation-url") == f"{setup.docs}/logs/{log['_id']}"


def test_doclink_asks_the_right_api(api: MetricsStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    from readme_metrics import MetricsApiConfig
    from readme_metrics.capture import BodyCopy, Capture
    from readme_metrics.doclink import DocLink, project_api_url

    monkeypatch.delenv("README_METRICS_SERVER", raising=False)
    assert project_api_url(MetricsApiConfig("k", None)) == "https://dash.readme.com/api/v1"
    assert project_api_url(MetricsApiConfig("k", None, metrics_server=api.url)) == api.url + "/v1"

    def capture() -> Capture:
        return Capture("GET", "http", "h", "/", "", "HTTP/1.1", None, [], BodyCopy(0), BodyCopy(0))

    assert (
        DocLink(MetricsApiConfig("k", None, base_log_url="https://d.test", documentation_header=False)).header(
            capture()
        )
        is None
    )
    # A wrong key: the stand-in refuses, the header stays absent and the next ask is postponed.
    link = DocLink(MetricsApiConfig("wrong-key", None, metrics_server=api.url))
    assert link.header(capture()) is None
    deadline = time.monotonic() + 10
    while link._next_attempt == 0.0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert link.base is None and link.header(capture()) is None
    # The right key: learned in the background, then every logged response gets its link.
    link = DocLink(MetricsApiConfig("test-api-key", None, metrics_server=api.url))
    assert link.header(capture()) is None
    while link.base is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    c = capture()
    assert link.header(c) == f"{FETCHED_BASE}/logs/{c.log_id}"
