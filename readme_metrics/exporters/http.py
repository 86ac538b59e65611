"""An HTTP POST with a total deadline, for the exporters that speak HTTP.

``requests``' own timeout bounds each read, so a server that answers a byte a second would
hold the worker for as long as it drips: here the post runs in a short-lived thread, and
one still running at the deadline is abandoned with its connection (the poster goes on
with a new session). At most ``MAX_ABANDONED`` abandoned posts may still be running;
while that many are, a post fails at once (and is retried later). In a forked child a
new session is made (never the parent's connections).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import requests

from readme_metrics._own_calls import OWN_CALL
from readme_metrics.exporters.base import ExportError

#: Posts past their deadline that may still be running (each holds a thread and a socket).
MAX_ABANDONED = 4


class Poster:
    """POSTs bodies to ``url`` with ``headers`` over one keep-alive session."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self.url = url
        self.headers = dict(headers)
        self.session = requests.Session()
        self._pid = os.getpid()
        self._abandoned: list[threading.Thread] = []

    def post(self, body: bytes, timeout: float) -> requests.Response:
        """POST ``body``, answered with a 2xx in full within ``timeout`` seconds, else
        :class:`ExportError` (with the status and ``Retry-After`` of an answer)."""
        response = self._post(body, timeout)
        if response.status_code >= 300:
            raise ExportError(
                f"{self.url} answered {response.status_code}: {response.text[:200]}",
                response.status_code,
                response.headers.get("Retry-After"),
            )
        return response

    def _post(self, body: bytes, timeout: float) -> requests.Response:
        if self._pid != os.getpid():  # a forked child: never the parent's connections
            self._pid = os.getpid()
            self.session = requests.Session()
            self._abandoned = []
        self._abandoned = [thread for thread in self._abandoned if thread.is_alive()]
        if len(self._abandoned) >= MAX_ABANDONED:
            raise ExportError(f"{len(self._abandoned)} earlier posts to {self.url} still hang; not posting now")
        outcome: list[Any] = []
        session = self.session

        def post() -> None:
            own = OWN_CALL.set(True)  # never captured as an outgoing call
            try:
                outcome.append(session.post(self.url, data=body, headers=self.headers, timeout=timeout))
            except BaseException as exc:  # handed to the worker below
                outcome.append(exc)
            finally:
                OWN_CALL.reset(own)

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

    def close(self) -> None:
        self.session.close()


def _short_reason(exc: requests.RequestException) -> str:
    """``[Errno 111] Connection refused`` rather than urllib3's paragraph about pools."""
    reason: Any = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    text = str(reason)
    return text.rsplit(": ", 1)[-1] if ": " in text else text or type(exc).__name__
