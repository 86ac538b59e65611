"""The configuration the route-policy test apps share (``tests.apps.routes_apps``)."""

from __future__ import annotations

from typing import Any

from readme_metrics import MetricsApiConfig, Route

AUDIT = 16 * 1024 * 1024
SLOW_MS = 300


def status_of(response: Any) -> int:
    """The status of any framework's response (Django's ``status_code``, else ``status``)."""
    return int(getattr(response, "status_code", None) or response.status)


def metadata(request: Any, response: Any) -> dict[str, Any]:
    if request.headers.get("X-Metadata-Raise"):
        raise RuntimeError("metadata hook failed")
    return {
        "tenant": request.headers.get("X-Tenant"),
        "status": status_of(response),
        "password": "pw",
        "kind": type(response).__name__,
        "content_type": response.headers.get("Content-Type"),
    }


BIG = b"z" * (2 * 1024 * 1024)  # over the app-wide 1 MiB: the body of GET /view-big


class Odd:
    """What some libraries return (a numpy array, say): its truth value raises."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value is ambiguous")


def skip(request: Any, response: Any) -> Any:
    if request.headers.get("X-Odd-Skip"):
        return Odd()
    return status_of(response) == 418


def config() -> MetricsApiConfig:
    return MetricsApiConfig(
        "test-api-key",
        "tests.integration.group",
        base_log_url="https://docs.example.test",
        flush_interval=0.05,
        denylist=["password"],
        routes={
            "/audit/*": Route(max_body_bytes=AUDIT),
            "/quiet/*": Route(log=False),
            "/sampled/*": Route(sample_rate=0.0),
            "/half/*": Route(sample_rate=0.5),
            "/secret/{name}": Route(denylist=["card"]),
        },
        always_log_slower_than_ms=SLOW_MS,
        metadata=metadata,
        skip=skip,
    )


RAISED = "card declined: password=hunter2, {'card': '4111111111111111'}"
