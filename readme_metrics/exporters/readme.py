"""The ReadMe metrics API: ``POST {metrics_server}/v1/request`` (the default exporter).

The body is a JSON array of log objects; the API key is the user name of HTTP Basic
auth (never inside a log). One keep-alive ``requests.Session`` per exporter;
``compress=True`` gzips the body (``Content-Encoding: gzip``; the local collector
accepts it, the hosted API may not). The protocol is described in ``docs/protocol.md``.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence
from typing import Any

import requests

from readme_metrics._version import __version__
from readme_metrics.exporters.base import ExportError

#: gzip level of compressed uploads: most of level 9's gain on JSON at a fraction of its cost.
GZIP_LEVEL = 5


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
        try:
            response = self.session.post(self.url, data=body, headers=self.headers, timeout=timeout)
        except requests.Timeout as exc:
            raise ExportError(f"no answer from {self.url} within {timeout:.3g}s") from exc
        except requests.RequestException as exc:
            raise ExportError(f"cannot reach {self.url}: {_short_reason(exc)}") from exc
        if response.status_code >= 300:
            raise ExportError(
                f"{self.url} answered {response.status_code}: {response.text[:200]}",
                response.status_code,
                response.headers.get("Retry-After"),
            )
        return len(body)

    def shutdown(self) -> None:
        self.session.close()


def _short_reason(exc: requests.RequestException) -> str:
    """``[Errno 111] Connection refused`` rather than urllib3's paragraph about pools."""
    reason: Any = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    text = str(reason)
    return text.rsplit(": ", 1)[-1] if ": " in text else text or type(exc).__name__
