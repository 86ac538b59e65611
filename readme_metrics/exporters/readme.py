"""The ReadMe metrics API: ``POST {metrics_server}/v1/request`` (the default exporter).

The body is a JSON array of log objects; the API key is the user name of HTTP Basic
auth (never inside a log). One keep-alive ``requests.Session`` per exporter;
``compress=True`` gzips the body (``Content-Encoding: gzip``; the local collector
accepts it, the hosted API may not). The protocol is described in ``docs/protocol.md``.

A post has a total deadline, ``timeout`` (``requests``' own timeout bounds each read, so
an API that answers a byte a second would hold the worker for as long as it drips): the
post runs in a short-lived thread, and one still running at the deadline is abandoned
with its connection (the exporter goes on with a new session). At most
``MAX_ABANDONED`` abandoned posts may still be running; while that many are, a post fails
at once (and is retried later).
"""

from __future__ import annotations

import base64
import gzip
import threading
from collections.abc import Sequence
from typing import Any

import requests

from readme_metrics._version import __version__
from readme_metrics.exporters.base import ExportError

#: gzip level of compressed uploads: most of level 9's gain on JSON at a fraction of its cost.
GZIP_LEVEL = 5

#: Posts past their deadline that may still be running (each holds a thread and a socket).
MAX_ABANDONED = 4


def json_array(logs: Sequence[bytes]) -> bytes:
    """The encoded logs as one JSON array (one copy of the whole)."""
    parts: list[bytes] = [b"["]
    for log in logs:
        parts += (log, b",")
    parts[-1] = b"]" if logs else b"[]"
    return b"".join(parts)


class ReadMeExporter:
    """Posts batches to a server speaking the ReadMe metrics protocol: the hosted API
    (``https://metrics.readme.io``) or the local collector (``readme-metrics serve``)."""

    def __init__(self, api_key: str, metrics_server: str, *, compress: bool = False) -> None:
        self.url = f"{metrics_server.rstrip('/')}/v1/request"
        self.compress = compress
        token = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
        self.headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "User-Agent": f"readme-metrics-python@{__version__}",
        }
        if compress:
            self.headers["Content-Encoding"] = "gzip"
        self.session = requests.Session()
        self._abandoned: list[threading.Thread] = []

    @classmethod
    def from_config(cls, config: Any) -> ReadMeExporter:
        """The exporter ``api_key``, ``metrics_server`` and ``compress`` configure."""
        return cls(config.api_key, config.metrics_server, compress=config.compress)

    def __repr__(self) -> str:
        return f"ReadMeExporter({self.url!r})"

    def export(self, logs: Sequence[bytes], timeout: float) -> int:
        body = json_array(logs)
        if self.compress:
            body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        response = self._post(body, timeout)
        if response.status_code >= 300:
            raise ExportError(
                f"{self.url} answered {response.status_code}: {response.text[:200]}",
                response.status_code,
                response.headers.get("Retry-After"),
            )
        return len(body)

    def _post(self, body: bytes, timeout: float) -> requests.Response:
        """POST ``body``, answered in full within ``timeout`` seconds, or ExportError."""
        self._abandoned = [thread for thread in self._abandoned if thread.is_alive()]
        if len(self._abandoned) >= MAX_ABANDONED:
            raise ExportError(f"{len(self._abandoned)} earlier posts to {self.url} still hang; not posting now")
        outcome: list[Any] = []
        session = self.session

        def post() -> None:
            try:
                outcome.append(session.post(self.url, data=body, headers=self.headers, timeout=timeout))
            except BaseException as exc:  # handed to the worker below
                outcome.append(exc)

        thread = threading.Thread(target=post, name="readme-metrics-post", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new threads (interpreter exit): post here, per-read timeouts only
            post()
        else:
            thread.join(timeout)
        if not outcome:  # still running: let it go with its connection, go on with a new one
            self._abandoned.append(thread)
            self.session = requests.Session()
            raise ExportError(f"no complete answer from {self.url} within {timeout:.3g}s")
        result = outcome[0]
        if isinstance(result, requests.Timeout):
            raise ExportError(f"no answer from {self.url} within {timeout:.3g}s") from result
        if isinstance(result, requests.RequestException):
            raise ExportError(f"cannot reach {self.url}: {_short_reason(result)}") from result
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    def shutdown(self) -> None:
        self.session.close()


def _short_reason(exc: requests.RequestException) -> str:
    """``[Errno 111] Connection refused`` rather than urllib3's paragraph about pools."""
    reason: Any = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    text = str(reason)
    return text.rsplit(": ", 1)[-1] if ": " in text else text or type(exc).__name__
