"""The ReadMe metrics API: ``POST {metrics_server}/v1/request`` (the default exporter).

The body is a JSON array of log objects; the API key is the user name of HTTP Basic
auth (never inside a log). One keep-alive ``requests.Session`` per exporter;
``compress=True`` gzips the body (``Content-Encoding: gzip``; the local collector
accepts it, the hosted API may not). The protocol is described in ``docs/protocol.md``.

A post has a total deadline, ``timeout``, even against an API that drips its answer
(:class:`readme_metrics.exporters.http.Poster`).
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence
from typing import Any

from readme_metrics._version import __version__
from readme_metrics.config import DEFAULT_METRICS_SERVER
from readme_metrics.exporters.http import Poster

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

    name = "readme"

    def __init__(self, api_key: str, metrics_server: str, *, compress: bool = False) -> None:
        self.url = f"{metrics_server.rstrip('/')}/v1/request"
        #: Whether logs of outgoing calls are sent here: never to the hosted API, which counts
        #: the calls made to your API (the sender drops them for it, counted as
        #: ``outgoing_not_accepted``); a collector or any other server takes them.
        self.accepts_outgoing = metrics_server.rstrip("/") != DEFAULT_METRICS_SERVER
        self.compress = compress
        token = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
        self.headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "User-Agent": f"readme-metrics-python@{__version__}",
        }
        if compress:
            self.headers["Content-Encoding"] = "gzip"
        self.poster = Poster(self.url, self.headers)

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
        self.poster.post(body, timeout)
        return len(body)

    def shutdown(self) -> None:
        self.poster.close()
