"""``requests``: its one seam, ``HTTPAdapter.send`` (every session's calls go through it).

The response body is recorded as the app reads it: ``requests`` reads through the
``urllib3`` response's ``read`` (``response.content``, ``iter_content``, ``raw.read``,
``stream``), which is wrapped on that one response object (the object itself, its class
and identity, stay). ``Session.send`` without ``stream=True`` reads the whole body at
once, as always; with ``stream=True`` the copy grows as the app reads (bounded), and a
body the app never reads is never read for the log. The copy holds the bytes as the app
gets them (``urllib3`` undoes ``gzip``/``deflate``/``br``), which the log records.
"""

from __future__ import annotations

import functools
from typing import Any

from readme_metrics.outgoing.calls import IN_CALL, Call, begin
from readme_metrics.outgoing.for_urllib3 import VERSIONS, follow_body
from readme_metrics.outgoing.patches import Patches

_patches = Patches()  # HTTPAdapter.send while instrumented


def patch() -> bool:
    """Wrap ``HTTPAdapter.send``; False when ``requests`` is not installed."""
    if _patches:
        return True
    try:
        from requests.adapters import HTTPAdapter
    except ImportError:
        return False
    original = HTTPAdapter.send

    @functools.wraps(original)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        call = begin(request, request.method or "GET", request.url or "", list(request.headers.items()), request.body)
        inside = IN_CALL.set(True)  # urllib3's own instrumentation leaves this call to us
        try:
            response = original(self, request, *args, **kwargs)
        except BaseException as exc:
            if call is not None:
                call.end(False, exc)
            raise
        finally:
            IN_CALL.reset(inside)
        if call is not None:
            _follow(call, response)
        return response

    _patches.put(HTTPAdapter, "send", original, send)
    return True


def unpatch() -> None:
    """Put ``requests``' own ``send`` back (unless someone wrapped ours since)."""
    _patches.restore()


def _follow(call: Call, response: Any) -> None:
    """Record the answer, and follow its body as the app reads it. Never raises."""
    try:
        raw = response.raw
        headers = getattr(raw, "headers", None)
        pairs = list(headers.items()) if headers is not None else list(response.headers.items())
        version = VERSIONS.get(getattr(raw, "version", 11), "HTTP/1.1")
        call.response(response.status_code, response.reason, pairs, version)
        follow_body(call, raw)
    except Exception:
        call.end(False)
