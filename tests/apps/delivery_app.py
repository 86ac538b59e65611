"""The WSGI app of the delivery tests: tiny endpoints, delivery settings from the environment.

Endpoints: ``/pid`` (the worker's process id, so a log tells which worker served it;
``/pid?0.1`` first sleeps 0.1 s),
``/hello``, ``/upload`` (reads the request body, answers its length), and, not logged,
``/_flush`` (flushes, then answers the client's counters as JSON).

Environment: ``README_METRICS_SERVER`` (read by the config), ``RM_BUFFER_LENGTH``,
``RM_FLUSH_INTERVAL``, ``RM_TIMEOUT`` and ``RM_RETRY_BACKOFF``. In-process tests call
:func:`make` with keyword overrides instead.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any

from readme_metrics import MetricsApiConfig
from readme_metrics.retry import Retry
from readme_metrics.wsgi import WsgiMetricsMiddleware


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/pid":  # ?<seconds> holds the request that long (to spread load over workers)
        query = environ.get("QUERY_STRING", "")
        if query:
            time.sleep(float(query))
        body = str(os.getpid()).encode()
    elif path == "/hello":
        body = b"hello"
    elif path == "/upload":
        body = str(len(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))).encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def group(req: Any) -> Any:
    return {"api_key": req.headers.get("X-Api-Key", "delivery-key-0000"), "label": "Delivery"}


class ControlledMiddleware(WsgiMetricsMiddleware):
    """The middleware plus an unlogged control endpoint for the tests."""

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/_flush":
            self.client.flush(10)
            body = json.dumps(self.stats()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return super().__call__(environ, start_response)


def settings_from_env() -> dict[str, Any]:
    """The delivery settings the ``RM_*`` variables give (defaults for the tests)."""
    env = os.environ.get
    return {
        "buffer_length": int(env("RM_BUFFER_LENGTH", "1")),
        "max_batch_events": max(500, int(env("RM_BUFFER_LENGTH", "1"))),
        "flush_interval": float(env("RM_FLUSH_INTERVAL", "0.05")),
        "timeout": float(env("RM_TIMEOUT", "3")),
        "retry": Retry(backoff_factor=float(env("RM_RETRY_BACKOFF", "0.5"))),
    }


def make(**overrides: Any) -> ControlledMiddleware:
    settings = {**settings_from_env(), **overrides}
    api_key = settings.pop("api_key", "test-api-key")
    return ControlledMiddleware(app, MetricsApiConfig(api_key, group, **settings))


wrapped = make()
