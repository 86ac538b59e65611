"""Test helpers for apps that use the SDK: see what would have been sent, send nothing.

:class:`MemoryTransport` replaces the exporter of a configuration: every log the SDK would
have posted to the metrics API is kept in memory instead, decoded from the very bytes that
would have gone over the wire, so a test can assert on it::

    from flask import Flask

    from readme_metrics import MetricsApiConfig, MetricsMiddleware
    from readme_metrics.testing import MemoryTransport

    app = Flask(__name__)
    app.get("/ping")(lambda: {"pong": True})

    config = MetricsApiConfig("any-key", lambda req: {"api_key": "k-1234", "label": "Tester"},
                              base_log_url="https://docs.example.test")
    sent = MemoryTransport.attach(config)          # before or after wrapping the app
    app.wsgi_app = MetricsMiddleware(app.wsgi_app, config)

    with app.test_client().get("/ping"):           # the log is made when the response closes
        pass
    sent.flush()                                   # wait for the worker to hand it over
    assert sent.entries[0]["request"]["url"] == "http://localhost/ping"
    assert sent.logs[0]["group"]["label"] == "Tester"

Everything else runs for real: the queue, the worker thread, HAR building, redaction and
your ``mask`` hook. ``attach`` accepts a ``MetricsApiConfig`` or a middleware. (Give
``base_log_url``, or the SDK asks the metrics server for it to set the
``x-documentation-url`` header.)
"""

from __future__ import annotations

from typing import Any

from readme_metrics.delivery import Client, client_for
from readme_metrics.exporters import MemoryExporter


class MemoryTransport(MemoryExporter):
    """A :class:`~readme_metrics.exporters.MemoryExporter` installed on a configuration's
    client: ``logs``, ``batches``, ``entries``, ``fail_with``, ``wait_for`` and ``clear``
    as there, plus :meth:`flush` and :meth:`stats` of the client it serves."""

    def __init__(self) -> None:
        super().__init__()
        self._client: Client | None = None

    @classmethod
    def attach(cls, target: Any) -> MemoryTransport:
        """A new one, installed on ``target``: a ``MetricsApiConfig`` or a middleware
        built from one."""
        transport = cls()
        transport.install(target)
        return transport

    def install(self, target: Any) -> None:
        """Make ``target``'s client (config or middleware) deliver here."""
        client = getattr(target, "client", None)
        if not isinstance(client, Client):
            config = getattr(target, "config", target)
            if not hasattr(config, "api_key"):
                raise TypeError(f"expected a MetricsApiConfig or a middleware, not {type(target).__name__}")
            client = client_for(config)
        client.set_exporter(self)
        self._client = client

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything the app logged so far was handed over."""
        if self._client is None:
            return True
        return self._client.flush(timeout)

    def stats(self) -> dict[str, Any]:
        """The client's counters (see docs/delivery.md)."""
        return self._client.stats() if self._client is not None else {}
