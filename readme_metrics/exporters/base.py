"""The exporter protocol: where encoded logs go, and how a failure is told.

An exporter owns the wire: it is given a batch of logs, each already built, redacted and
encoded as the JSON of the log object (``docs/protocol.md``), and delivers them in its
own format (the ReadMe API takes a JSON array, a JSON-lines file one log per line). It
knows nothing of queues, batching or retries: :class:`readme_metrics.delivery.sender.Sender`
retries around it, as the configuration's :class:`~readme_metrics.retry.Retry` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


class ExportError(Exception):
    """A batch was not accepted.

    ``status`` is the HTTP status (or the status-like code of another wire), or ``None``
    when there was no answer at all (connection error, timeout); ``retry_after`` is the
    raw ``Retry-After`` header, if any. Whether it is retried is the policy's decision
    (:meth:`readme_metrics.retry.Retry.is_retryable`); 401 and 403 never are.
    """

    def __init__(self, message: str, status: int | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@runtime_checkable
class Exporter(Protocol):
    """Delivers batches of encoded logs.

    ``export`` delivers ``logs`` within ``timeout`` seconds and returns the bytes it sent;
    it raises :class:`ExportError` when they were not accepted (anything else it raises
    is counted as ``transport_error`` and not retried). ``shutdown`` lets its resources
    go (connections, files); an exporter may be used again after it.

    Optional attribute ``accepts_outgoing`` (True when absent): False for a destination
    that must never get the logs of outgoing calls (``_direction: "outgoing"``); the sender
    then leaves them out of its batches and counts them as dropped
    (``outgoing_not_accepted``). The ReadMe exporter sets it False for the hosted API.
    """

    def export(self, logs: Sequence[bytes], timeout: float) -> int: ...

    def shutdown(self) -> None: ...
