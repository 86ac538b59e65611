"""Rate-limited warnings are limited per kind of problem, not per process (issue 20)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client

from readme_metrics import MetricsApiConfig, MetricsMiddleware
from readme_metrics._log import warn_limited
from tests.standin import MetricsStandIn, with_header


@pytest.fixture
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "readme_metrics" and r.levelno == logging.WARNING]


def test_same_kind_is_limited_other_kinds_are_not(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="readme_metrics"):
        warn_limited("group", "the grouping function raised %s", "KeyError")
        warn_limited("group", "the grouping function raised %s", "ValueError")  # same kind: held back
        warn_limited("group", "the grouping function returned %s", "str")  # another kind, same key
        warn_limited("skip", "the grouping function raised %s", "KeyError")  # another key
    assert _warnings(caplog) == [
        "the grouping function raised KeyError",
        "the grouping function returned str",
        "the grouping function raised KeyError",
    ]


def test_the_held_back_ones_are_counted_in_the_next(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="readme_metrics"):
        for _ in range(3):
            warn_limited("k", "problem %d", 1, every=0.0)
        warn_limited("k", "problem %d", 1, every=3600.0)
        warn_limited("k", "problem %d", 1, every=3600.0)
        warn_limited("k", "problem %d", 1, every=0.0)
    assert _warnings(caplog) == ["problem 1"] * 3 + ["problem 1 (2 similar warnings suppressed)"]


def test_a_grouping_function_that_returns_a_string_after_one_that_raised_is_reported(
    api: MetricsStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case, end to end: the first request's grouping function raises, the
    second's returns a string. Both problems are reported (before, the second warning
    was swallowed for a minute by the first one's limit)."""
    answers: list[Any] = [KeyError("no such user"), "acme"]

    def grouping(request: Any) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    config = MetricsApiConfig("test-api-key", grouping, metrics_server=api.url, documentation_header=False)
    with caplog.at_level(logging.WARNING, logger="readme_metrics"):
        middleware = MetricsMiddleware(app, config)
        try:
            client = Client(middleware)
            for test_id in ("raises", "string"):
                with client.get("/", headers={"X-Test-Id": test_id}) as response:
                    assert response.data == b"ok"
            api.wait_for(with_header("X-Test-Id", "string"))
            assert middleware.client.flush(timeout=5)
        finally:
            middleware.client.close()
    warned = _warnings(caplog)
    assert any("grouping function raised KeyError" in w for w in warned), warned
    assert any("grouping function returned str" in w for w in warned), warned
    # Both requests were still logged, as anonymous.
    assert [log["group"]["id"] for log in api.logs] == ["anonymous", "anonymous"]
