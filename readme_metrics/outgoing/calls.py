"""One outgoing call as it happens: decided (filters, hook), recorded, finished once.

Runs in the app's threads, like the middlewares: a :class:`Call` records the request,
the response's status and headers, and a bounded copy of each body as the app sends and
reads it, then hands its :class:`~readme_metrics.capture.OutgoingCapture` to the client's
queue. Building and redaction happen on the worker, as for incoming requests.

When a call is finished: when the app has read the whole response body, or closed the
response; a response the app drops without either is finished when it is garbage
collected (``weakref.finalize``, nothing kept alive for it), marked incomplete. A call
that raises (connection refused, timeout) is finished as failed: status 0 and the error.

A call made while a request is served shares that request's fate (:mod:`readme_metrics._links`):
not recorded at all when the request is not logged, else held until the request's fate is
known.
"""

from __future__ import annotations

import inspect
import itertools
import threading
import weakref
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from readme_metrics._hooks import host_pattern
from readme_metrics._links import Link, OutgoingLinks
from readme_metrics._log import warn_limited
from readme_metrics._own_calls import OWN_CALL
from readme_metrics.capture import OUTGOING_GROUP, BodyCopy, Capture, OutgoingCapture
from readme_metrics.delivery import client_for


class Recorder:
    """Outgoing capture for one configuration: its host filter, hook, bound and client."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.client = client_for(config)
        self.hosts = host_pattern(config.outgoing_hosts)
        self.skip = config.skip_outgoing
        self.limit = config.max_body_bytes if config.log_body else 0

    def limit_for(self, parent: Capture | None) -> int:
        """The body bound of a call made while serving ``parent``: its route's ``log_body``
        (as it stands when the call starts) wins over the app-wide one."""
        extras = parent.extras if parent is not None else None
        policy = extras.policy if extras is not None else None
        if policy is None or policy.log_body is None:
            return self.limit
        return self.config.max_body_bytes if policy.log_body else 0

    def wants(self, request: Any, host: str) -> bool:
        """``outgoing_hosts`` and the ``skip_outgoing`` hook (guarded: a hook that raises
        does not skip) say whether this call is logged."""
        if self.hosts is not None and not self.hosts.fullmatch(host):
            return False
        if self.skip is None:
            return True
        try:
            result = self.skip(request)
        except Exception as exc:
            warn_limited(
                "skip_outgoing",
                "readme_metrics: the skip_outgoing hook raised %s: %s; logging the call",
                type(exc).__name__,
                exc,
            )
            return True
        if inspect.isawaitable(result):  # cannot be awaited where the call is made
            close = getattr(result, "close", None)
            if close is not None:
                close()
            warn_limited("skip_outgoing_async", "readme_metrics: skip_outgoing must not be async; logging the call")
            return True
        return not result


#: True while an instrumented library handles a call: a library it uses underneath
#: (``requests`` -> ``urllib3``), or its own retries and redirects, log nothing more.
IN_CALL: ContextVar[bool] = ContextVar("readme_metrics_in_call", default=False)

#: Configuration -> its recorder: nothing is kept on the user's object. Not weak in
#: effect: the recorder (and its delivery client) hold the configuration, so an
#: instrumented configuration lives until :func:`~readme_metrics.outgoing.uninstrument`
#: forgets them all (a process instruments a handful, once).
recorders: dict[Any, Recorder] = {}
#: The recorder of calls made outside any request served with a recording configuration.
default: list[Recorder] = []


def recorder_for(serving: Link | None) -> Recorder | None:
    """The serving request's configuration's recorder, else the default one."""
    if serving is not None:
        recorder = recorders.get(serving.config)
        if recorder is not None:
            return recorder
    return default[0] if default else None


def begin(request: Any, method: str, url: str, headers: Sequence[Sequence[Any]], body: Any) -> Call | None:
    """A :class:`Call` for this request, or None when it is not to be logged (the SDK's
    own calls, filters, hook; a request being served that is not logged; or no recorder).
    Never raises."""
    if OWN_CALL.get() or threading.current_thread().name.startswith("readme-metrics"):
        return None
    try:
        serving = OutgoingLinks.serving.get()
        if serving is not None and serving.kept is False:  # the request is not logged
            return None
        recorder = recorder_for(serving)
        if recorder is None:
            return None
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]  # never the URL's user info
        if not recorder.wants(request, host.lower()):
            return None
        parent = serving.capture if serving is not None else None
        group = parent.group if parent is not None and parent.group is not None else OUTGOING_GROUP
        limit = recorder.limit_for(parent)
        capture = OutgoingCapture(
            method.upper(),
            parts.scheme,
            host,
            parts.path or "/",
            parts.query,
            "HTTP/1.1",
            None,
            headers,
            BodyCopy(limit),
            BodyCopy(limit),
            group,
        )
        capture.parent = parent.log_id if parent is not None else None
        capture.decoded = False
        if isinstance(body, (bytes, bytearray, memoryview)):
            capture.request_body.add(body)
        elif isinstance(body, str):
            capture.request_body.add(body.encode("utf-8"))
        return Call(capture, recorder, serving if parent is not None else None)
    except Exception as exc:  # a bug of ours: the call goes on, unlogged
        warn_limited("outgoing", "readme_metrics: could not record an outgoing call (%s: %s)", type(exc).__name__, exc)
        return None


class Call:
    """One outgoing call being recorded; :meth:`end` submits it, once (to the serving
    request's ``link``, which holds it until that request's fate is known)."""

    __slots__ = ("__weakref__", "_ends", "capture", "done", "finalizer", "link", "recorder")

    def __init__(self, capture: OutgoingCapture, recorder: Recorder, link: Link | None = None) -> None:
        self.capture = capture
        self.recorder = recorder
        self.link = link
        self.done = False
        #: ``next()`` of it is 0 for the first :meth:`end` only: atomic, whichever thread
        #: ends the call (the app's, or the garbage collector's finalizer).
        self._ends = itertools.count()
        self.finalizer: weakref.finalize[Any, Any] | None = None

    def response(self, status: int, reason: str | None, headers: Sequence[Sequence[Any]], version: str) -> None:
        capture = self.capture
        capture.http_version = version
        capture.response_started(status, headers, reason)

    def add(self, chunk: bytes) -> None:
        if not self.done:
            self.capture.response_body.add(chunk)

    def watch(self, body_owner: Any) -> None:
        """Finish the call, as incomplete, when ``body_owner`` (what holds the unread
        body) is garbage collected before the body was read or closed."""
        finalizer = self.finalizer = weakref.finalize(body_owner, self.end, False)
        finalizer.atexit = False

    def end(self, completed: bool, error: BaseException | None = None) -> None:
        """Finish and submit (once, even from two threads at a time; later calls do
        nothing). Never raises."""
        if next(self._ends):
            return
        self.done = True
        try:
            if self.finalizer is not None:
                self.finalizer.detach()
                self.finalizer = None
            self.capture.finish(completed, error)
            if self.link is None:
                self.recorder.client.submit(self.capture)
            else:
                self.link.submit(self.capture, self.recorder.client)
        except Exception as exc:
            warn_limited("outgoing", "readme_metrics: could not log an outgoing call (%s: %s)", type(exc).__name__, exc)
