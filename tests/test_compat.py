"""Drop-in behaviour against readme-metrics 3.4.0 (issue 20): the WSGI ``start_response``
call, 3.4.0's upper-case config attributes, a config without a grouping function."""

from __future__ import annotations

import sys
import time
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


# -- 3.4.0's upper-case attributes -------------------------------------------------------

#: Every attribute readme-metrics 3.4.0's MetricsApiConfig had, with what ours reads as.
V340_ATTRIBUTES = {
    "README_API_KEY": "compat-api-key",
    "GROUPING_FUNCTION": group_of,
    "BASE_LOG_URL": "https://docs.example.test",
    "BUFFER_LENGTH": 2,
    "IS_DEVELOPMENT_MODE": True,
    "IS_BACKGROUND_MODE": False,
    "DENYLIST": ["password"],
    "ALLOWLIST": ["id"],
    "ALLOWED_HTTP_HOSTS": ["api.example.test"],
    "README_API_URL": "https://dash.readme.com/api",
    "METRICS_API": "https://metrics.readme.io",
    "METRICS_API_TIMEOUT": 7,
}


def _config(**options: Any) -> MetricsApiConfig:
    return MetricsApiConfig(
        "compat-api-key",
        group_of,
        "https://docs.example.test/",
        2,
        True,
        False,
        ["id"],
        ["password"],
        allowed_http_hosts=["api.example.test"],
        timeout=7,
        **options,
    )


def test_every_340_attribute_reads_our_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    monkeypatch.delenv("README_METRICS_SERVER", raising=False)
    config = _config()
    assert {name: getattr(config, name) for name in V340_ATTRIBUTES} == V340_ATTRIBUTES
    assert config.LOGGER is logging.getLogger("readme_metrics")
    # A metrics server of our own answers GET /v1 itself (the collector does).
    assert _config(metrics_server="http://127.0.0.1:9").README_API_URL == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("name", "value", "attr", "ours"),
    [
        ("README_API_KEY", "other-key", "api_key", "other-key"),
        ("GROUPING_FUNCTION", "tests.test_compat.group_of", "grouping_function", group_of),
        ("BASE_LOG_URL", "https://hub.example.test/", "base_log_url", "https://hub.example.test"),
        ("BUFFER_LENGTH", 5, "buffer_length", 5),
        ("IS_DEVELOPMENT_MODE", False, "development_mode", False),
        ("IS_BACKGROUND_MODE", True, "background_worker_mode", True),
        ("DENYLIST", ["token"], "denylist", ("token",)),
        ("ALLOWLIST", ["name"], "allowlist", ("name",)),
        ("ALLOWED_HTTP_HOSTS", ["*.example.test"], "allowed_http_hosts", ("*.example.test",)),
        ("METRICS_API", "http://127.0.0.1:9/", "metrics_server", "http://127.0.0.1:9"),
        ("METRICS_API_TIMEOUT", 1.5, "timeout", 1.5),
        ("README_API_URL", "http://127.0.0.1:8/api", "readme_api_url", "http://127.0.0.1:8/api"),
    ],
)
def test_setting_a_340_attribute_sets_ours(
    name: str, value: Any, attr: str, ours: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("README_METRICS_SERVER", raising=False)
    config = _config()
    setattr(config, name, value)
    assert getattr(config, attr) == ours
    assert name not in vars(config)  # not a stray attribute beside ours


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("README_API_KEY", "", "api_key"),
        ("GROUPING_FUNCTION", "nodots", "dotted"),
        ("BASE_LOG_URL", "docs.example.test", "base_log_url"),
        ("BUFFER_LENGTH", 0, "buffer_length"),
        ("BUFFER_LENGTH", 501, "max_batch_events"),
        ("DENYLIST", "password", "denylist"),
        ("METRICS_API", "ftp://x", "metrics server"),
        ("METRICS_API_TIMEOUT", -1, "timeout"),
        ("README_API_URL", "dash.readme.com", "README_API_URL"),
    ],
)
def test_a_340_attribute_is_validated_like_the_argument(name: str, value: Any, message: str) -> None:
    config = _config()
    with pytest.raises(ValueError, match=message):
        setattr(config, name, value)


def test_the_metrics_server_environment_variable_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("README_METRICS_SERVER", "http://127.0.0.1:7")
    config = _config()
    config.METRICS_API = "http://127.0.0.1:9"
    assert config.metrics_server == "http://127.0.0.1:7"  # as in 3.4.0, which read it at each post


def test_a_340_attribute_cannot_change_once_a_middleware_uses_the_config(api: MetricsStandIn) -> None:
    config = MetricsApiConfig("test-api-key", group_of, metrics_server=api.url)
    middleware = MetricsMiddleware(lambda environ, start_response: [], config)
    try:
        for name in ("BUFFER_LENGTH", "DENYLIST", "README_API_URL"):
            with pytest.raises(AttributeError, match=f"{name} cannot change .* before building the middleware"):
                setattr(config, name, V340_ATTRIBUTES[name])
        assert config.buffer_length == 1 and config.denylist == () and config.readme_api_url is None
    finally:
        middleware.client.close()


def test_logger_cannot_be_set_and_says_what_to_do() -> None:
    with pytest.raises(AttributeError, match=r"getLogger\('readme_metrics'\)"):
        _config().LOGGER = object()


def test_readme_api_url_set_by_the_app_is_where_the_base_url_is_learned(api: MetricsStandIn) -> None:
    """3.4.0 apps point README_API_URL at their own ReadMe API (a mock, a proxy): the
    documentation link's base URL is learned there, not from the metrics server."""
    from werkzeug.test import Client

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    api.base_url = "https://metrics-server.example.test"
    with MetricsStandIn() as readme_api:
        readme_api.base_url = "https://hub.example.test"
        config = MetricsApiConfig("test-api-key", group_of, metrics_server=api.url)
        config.README_API_URL = readme_api.url
        middleware = MetricsMiddleware(app, config)
        try:
            client = Client(middleware)
            deadline = time.monotonic() + 10
            link = None
            while link is None and time.monotonic() < deadline:
                with client.get("/") as response:
                    link = response.headers.get("x-documentation-url")
                time.sleep(0.05)
            assert link is not None and link.startswith("https://hub.example.test/logs/")
        finally:
            middleware.client.close()


# -- no grouping function ----------------------------------------------------------------


def test_no_grouping_function_logs_everything_as_anonymous_and_says_so(
    api: MetricsStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    from werkzeug.test import Client

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    config = MetricsApiConfig("test-api-key", None, metrics_server=api.url, documentation_header=False)
    with caplog.at_level("WARNING", logger="readme_metrics"):
        middleware = MetricsMiddleware(app, config)
    try:
        warned = [r.getMessage() for r in caplog.records if "no grouping function" in r.getMessage()]
        assert len(warned) == 1 and "'anonymous'" in warned[0] and "3.4.0 logged nothing" in warned[0]
        with Client(middleware).get("/", headers={"X-Test-Id": "no-grouping"}) as response:
            assert response.data == b"ok"
        log = api.wait_for(with_header("X-Test-Id", "no-grouping"))[0]
        assert log["group"] == {"id": "anonymous", "label": "anonymous"}
    finally:
        middleware.client.close()


def test_a_grouping_function_gives_no_such_warning(api: MetricsStandIn, caplog: pytest.LogCaptureFixture) -> None:
    config = MetricsApiConfig("test-api-key", group_of, metrics_server=api.url)
    with caplog.at_level("WARNING", logger="readme_metrics"):
        middleware = MetricsMiddleware(lambda environ, start_response: [], config)
    middleware.client.close()
    assert not [r for r in caplog.records if "grouping function" in r.getMessage()]
