"""A WSGI app with the SDK whose ``/metrics`` shows the delivery counters (tests of
:mod:`readme_metrics.prometheus` under gunicorn's several workers).

``/metrics`` is not logged; every other path is the delivery app's (``/pid``, ``/hello``).
With ``PROMETHEUS_MULTIPROC_DIR`` set, the counters of every worker are summed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from readme_metrics.prometheus import DeliveryCollector
from tests.apps.delivery_app import make

middleware = make()
registry = CollectorRegistry()
registry.register(DeliveryCollector(middleware))  # the one line


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/metrics":
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4"), ("Content-Length", str(len(body)))])
        return [body]
    return middleware(environ, start_response)
