"""Test helpers for apps that use the SDK: see what would have been sent, send nothing.

:class:`MemoryTransport` replaces the HTTP transport of a configuration: every batch the
SDK would have posted to the metrics API is kept in memory instead, exactly as it would
have gone over the wire (JSON-encoded, then decoded back), so a test can assert on it::

    from readme_metrics import MetricsApiConfig, MetricsMiddleware
    from readme_metrics.testing import MemoryTransport

    config = MetricsApiConfig("any-key", lambda req: {"api_key": "k-1234", "label": "Tester"})
    sent = MemoryTransport.attach(config)          # before or after wrapping the app
    app.wsgi_app = MetricsMiddleware(app.wsgi_app, config)

    app.test_client().get("/ping")
    sent.flush()                                   # wait for the worker to hand it over
    assert sent.entries[0]["request"]["url"] == "http://localhost/ping"
    assert sent.logs[0]["group"]["label"] == "Tester"

Everything else runs for real: the queue, the worker thread, HAR building, redaction and
your ``mask`` hook. ``attach`` accepts a ``MetricsApiConfig`` or a middleware.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from readme_metrics.delivery import Batch, Client, DeliveryError, client_for

Log = dict[str, Any]


class MemoryTransport:
    """A transport that keeps the log objects instead of posting them.

    - ``logs``: every log object delivered so far, oldest first.
    - ``batches``: the same logs, grouped as they would have been posted.
    - ``entries``: the HAR entry of each log (one per logged exchange).
    - ``fail_with``: set to an HTTP status (e.g. 503) to make the next sends fail
      as the API would; ``None`` (the default) accepts everything.
    """

    def __init__(self) -> None:
        self.batches: list[list[Log]] = []
        self.fail_with: int | None = None
        self._client: Client | None = None
        self._cond = threading.Condition()

    @classmethod
    def attach(cls, target: Any) -> MemoryTransport:
        """A new transport, installed on ``target``: a ``MetricsApiConfig`` or a
        middleware built from one. Returns the transport."""
        transport = cls()
        transport.install(target)
        return transport

    def install(self, target: Any) -> None:
        """Make ``target``'s client (config or middleware) send to this transport."""
        client = getattr(target, "client", None)
        if not isinstance(client, Client):
            config = getattr(target, "config", target)
            if not hasattr(config, "api_key"):
                raise TypeError(f"expected a MetricsApiConfig or a middleware, not {type(target).__name__}")
            client = client_for(config)
        client.set_transport(self)
        self._client = client

    # -- the Transport protocol --------------------------------------------------------

    def send(self, batch: Batch, timeout: float) -> int:
        status = self.fail_with
        if status is not None:
            raise DeliveryError(f"MemoryTransport.fail_with = {status}", status)
        logs: list[Log] = json.loads(batch.body)
        with self._cond:
            self.batches.append(logs)
            self._cond.notify_all()
        return len(batch.body)

    def close(self) -> None:
        pass

    # -- for tests ---------------------------------------------------------------------

    @property
    def logs(self) -> list[Log]:
        with self._cond:
            return [log for batch in self.batches for log in batch]

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [entry for log in self.logs for entry in log["request"]["log"]["entries"]]

    def clear(self) -> None:
        with self._cond:
            self.batches.clear()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything the app logged so far was handed to this transport."""
        if self._client is None:
            return True
        return self._client.flush(timeout)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Log]:
        """The logs, once at least ``count`` arrived (AssertionError after ``timeout``)."""
        with self._cond:
            if not self._cond.wait_for(lambda: sum(map(len, self.batches)) >= count, timeout):
                raise AssertionError(
                    f"{sum(map(len, self.batches))} of {count} expected logs arrived within {timeout}s"
                )
            return [log for batch in self.batches for log in batch]

    def stats(self) -> dict[str, Any]:
        """The client's counters (see docs/delivery.md)."""
        return self._client.stats() if self._client is not None else {}
