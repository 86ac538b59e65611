"""The documentation link: ``x-documentation-url`` on the response the client receives.

Each logged response gets ``x-documentation-url: {base}/logs/{log id}``, where ``log id``
is the ``_id`` of the log object sent for this exchange, so the API's callers can jump
from a response straight to its log in the developer hub. It is the only change the SDK
ever makes to a response, and only to one that is logged (a request the filters, the skip
hook or the grouping function leave out gets nothing). An ``x-documentation-url`` the app
set itself is kept as it is.

Where ``base`` comes from:

1. ``MetricsApiConfig(base_log_url=...)``, when given: used from the first request.
2. Otherwise the project's base URL is asked once, from a short-lived background thread
   (never on the request path), with ``GET {api}/v1`` (Basic auth with the API key), whose
   JSON answer carries ``{"baseUrl": "https://docs.example.com"}``. ``{api}`` is the
   ReadMe API (``https://dash.readme.com/api``) when the metrics server is the hosted one,
   and the metrics server itself when another one is configured (``metrics_server=`` or
   ``README_METRICS_SERVER``, e.g. the local collector, which answers ``GET /v1`` the same
   way); ``config.README_API_URL`` (3.4.0's name), when the app set it, wins over both.
   Until the answer arrives the header is simply absent. A failed ask is tried again,
   off the request path too, when a request arrives after a pause: after an outage (no
   answer, 408, 429, 5xx) the pause starts at :data:`RETRY_FIRST` and doubles up to
   :data:`RETRY_OUTAGE_MAX`, so the header comes back soon after the API does; after a
   refusal (another status, or an unusable ``baseUrl``) it is :data:`RETRY_AFTER`.

A ``baseUrl`` becomes the base of a header only when it is an absolute http(s) URL of
printable ASCII characters with a host, at most ``MAX_BASE_URL`` characters
(:func:`readme_metrics.config.clean_base_url`): an answer holding CR/LF, spaces or
characters beyond ASCII is refused, so it can never inject a header or break the
response.

``MetricsApiConfig(documentation_header=False)`` turns the header off entirely.

The adapters (WSGI, ASGI, Django) call :meth:`DocLink.header` once per logged response,
when the response starts; one :class:`DocLink` is shared per configuration
(:func:`doclink_for`).
"""

from __future__ import annotations

import base64
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import requests

from readme_metrics._log import logger, warn_limited
from readme_metrics._own_calls import OWN_CALL
from readme_metrics._version import __version__
from readme_metrics.capture import new_log_id
from readme_metrics.config import README_API as README_API  # re-exported: where it was
from readme_metrics.config import clean_base_url, project_api

if TYPE_CHECKING:
    from readme_metrics.capture import Capture
    from readme_metrics.config import MetricsApiConfig

#: The response header's name (lower case: HTTP/2 and ASGI want it so; HTTP/1.1 does not care).
HEADER = "x-documentation-url"
_RAW_HEADER = HEADER.encode("ascii")
#: Seconds before the next attempt to learn the base URL after a refusal (a status that
#: does not mean "try later", or an unusable ``baseUrl``).
RETRY_AFTER = 600.0
#: Seconds before the first new attempt after an outage (no answer, 408, 429, 5xx) ...
RETRY_FIRST = 1.0
#: ... doubling after each failed one up to this.
RETRY_OUTAGE_MAX = 60.0


class BaseUrlError(ValueError):
    """The API did not give a usable base URL; ``outage``: worth asking again soon."""

    def __init__(self, message: str, *, outage: bool) -> None:
        super().__init__(message)
        self.outage = outage


def _lower_bytes(name: Any) -> bytes:
    return (name.encode("latin-1") if isinstance(name, str) else bytes(name)).lower()


def project_api_url(config: MetricsApiConfig) -> str:
    """The URL that answers ``{"baseUrl": ...}`` for this configuration."""
    return f"{project_api(config)}/v1"


def fetch_base_url(config: MetricsApiConfig) -> str:
    """Ask the API for the project's base URL (blocking; call it off the request path).

    Raises :class:`BaseUrlError` (``outage`` for no answer, 408, 429 and 5xx)."""
    url = project_api_url(config)
    token = base64.b64encode(f"{config.api_key}:".encode()).decode("ascii")
    headers = {"Authorization": f"Basic {token}", "User-Agent": f"readme-metrics-python@{__version__}"}
    own = OWN_CALL.set(True)  # never captured as an outgoing call
    try:
        response = requests.get(url, headers=headers, timeout=config.timeout)
    except requests.RequestException as exc:
        raise BaseUrlError(f"cannot reach {url}: {type(exc).__name__}", outage=True) from exc
    finally:
        OWN_CALL.reset(own)
    status = response.status_code
    if status != 200:
        raise BaseUrlError(f"{url} answered {status}", outage=status in (408, 429) or status >= 500)
    try:
        answer = response.json()
    except ValueError:
        raise BaseUrlError(f"{url} answered something else than JSON", outage=False) from None
    raw = answer.get("baseUrl") if isinstance(answer, dict) else None
    base = clean_base_url(raw)
    if base is None:
        shown = repr(raw) if not isinstance(raw, str) or len(raw) <= 100 else repr(raw[:100]) + "..."
        raise BaseUrlError(
            f"{url} gave no usable baseUrl ({shown}: an absolute http(s) URL of printable ASCII is needed)",
            outage=False,
        )
    return base


class DocLink:
    """The ``x-documentation-url`` of one configuration. See the module docstring."""

    def __init__(self, config: MetricsApiConfig) -> None:
        self.config = config
        self.enabled = config.documentation_header
        self.base: str | None = config.base_log_url
        self._lock = threading.Lock()
        self._fetching_pid: int | None = None
        self._next_attempt = 0.0
        self._outage_pause = RETRY_FIRST

    def header(self, capture: Capture) -> str | None:
        """The header value for this logged response, or None (off, or base not known yet).

        Gives the capture its log id, so the log sent carries the same ``_id``. None for a
        request sampling left out (its log is not sent, unless its outcome, not known
        yet, keeps it) or dropped by a view's ``log=False``.
        """
        extras = capture.extras
        if extras is not None and (not extras.sampled or extras.dropped):
            return None
        base = self.base
        if base is None or not self.enabled:
            if self.enabled and time.monotonic() >= self._next_attempt:
                self._start_fetch()
            return None
        log_id = capture.log_id
        if log_id is None:
            log_id = capture.log_id = new_log_id()
        return f"{base}/logs/{log_id}"

    def add_to(self, capture: Capture, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """WSGI-style headers with the link appended (a new list), unless the app set one.

        Never raises: headers it cannot read are passed on as they are.
        """
        try:
            link = self.header(capture)
            if link is None:
                return headers
            for name, _ in headers:
                if (name if type(name) is str else str(name)).lower() == HEADER:
                    return headers
            return [*headers, (HEADER, link)]
        except Exception:
            return headers

    def add_to_raw(self, capture: Capture, headers: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
        """ASGI-style ``[(name, value)]`` byte headers with the link appended (a new list)."""
        items = list(headers)
        try:
            link = self.header(capture)
            if link is not None:
                for item in items:
                    name = item[0]
                    if (name if type(name) is bytes else _lower_bytes(name)).lower() == _RAW_HEADER:
                        return items
                items.append((_RAW_HEADER, link.encode("latin-1")))
        except Exception:
            pass
        return items

    def _start_fetch(self) -> None:
        with self._lock:
            pid = os.getpid()
            # A fetch started before a fork did not survive into this child: start our own.
            if self.base is not None or self._fetching_pid == pid or time.monotonic() < self._next_attempt:
                return
            self._fetching_pid = pid
        thread = threading.Thread(target=self._fetch, name="readme-metrics-doclink", daemon=True)
        thread.start()

    def _fetch(self) -> None:
        try:
            base = fetch_base_url(self.config)
        except Exception as exc:
            outage = isinstance(exc, BaseUrlError) and exc.outage
            warn_limited(
                "doclink",
                "readme_metrics: cannot learn the project's base URL for x-documentation-url (%s); "
                "set base_log_url to give it",
                exc,
                every=3600.0,
            )
            with self._lock:
                if outage:  # back soon, maybe: ask again soon, less often the longer it lasts
                    pause, self._outage_pause = self._outage_pause, min(self._outage_pause * 2, RETRY_OUTAGE_MAX)
                else:
                    pause = RETRY_AFTER
                self._next_attempt = time.monotonic() + pause
                self._fetching_pid = None
            return
        with self._lock:
            self.base = base
            self._outage_pause = RETRY_FIRST
            self._fetching_pid = None
        logger.info("readme_metrics: x-documentation-url links start with %s/logs/", base)


def doclink_for(config: MetricsApiConfig) -> DocLink:
    """The one :class:`DocLink` of a configuration (middlewares sharing a config share it)."""
    with _links_lock:
        link = _links.get(config)
        if link is None:
            link = _links[config] = DocLink(config)
        return link


#: The link of each configuration (kept here, not on the user's object).
_links: weakref.WeakKeyDictionary[Any, DocLink] = weakref.WeakKeyDictionary()
_links_lock = threading.Lock()
