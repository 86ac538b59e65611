"""Drop-in behaviour against readme-metrics 3.4.0 (issue 20): the WSGI ``start_response``
call, 3.4.0's upper-case config attributes, a config without a grouping function."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from readme_metrics import MetricsApiConfig, MetricsMiddleware
from tests.standin import MetricsStandIn, with_header


@pytest.fixture
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


def group_of(request: Any) -> dict[str, str]:
    return {"api_key": "compat-key-1234", "label": "Compat"}


# -- WSGI start_response -----------------------------------------------------------------


def _environ(test_id: str) -> dict[str, Any]:
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {"HTTP_X_TEST_ID": test_id}
    setup_testing_defaults(environ)
    return environ


def test_start_response_gets_two_arguments_without_exc_info(api: MetricsStandIn) -> None:
    """A harness whose ``start_response`` takes exactly (status, headers), as many test
    doubles do: the middleware must not pass a third ``None``."""
    calls: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> Any:  # exactly two
        calls.append((status, headers))
        return lambda data: None

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"made"]

    config = MetricsApiConfig("test-api-key", group_of, metrics_server=api.url, documentation_header=False)
    middleware = MetricsMiddleware(app, config)
    try:
        result = middleware(_environ("two-args"), start_response)
        body = b"".join(result)
        result.close()  # type: ignore[attr-defined]  # a server closes the response: the log is final
        assert body == b"made"
        assert calls == [("201 Created", [("Content-Type", "text/plain")])]
        api.wait_for(with_header("X-Test-Id", "two-args"))
    finally:
        middleware.client.close()


def test_start_response_gets_exc_info_when_the_app_gives_it(api: MetricsStandIn) -> None:
    """An app answering an error after it started passes ``exc_info``: it reaches the server."""
    received: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = "absent") -> Any:
        received.append(exc_info)
        return lambda data: None

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            raise KeyError("lost")
        except KeyError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"oops"]

    config = MetricsApiConfig("test-api-key", group_of, metrics_server=api.url, documentation_header=False)
    middleware = MetricsMiddleware(app, config)
    try:
        assert b"".join(middleware(_environ("exc-info"), start_response)) == b"oops"
        assert len(received) == 1 and received[0][0] is KeyError
    finally:
        middleware.client.close()
