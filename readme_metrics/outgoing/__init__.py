"""Outgoing calls: what the app asks of other services, logged like the requests it serves.

``MetricsApiConfig(..., capture_outgoing=True)`` instruments the HTTP client libraries the
app has installed when the first middleware with that configuration is built;
:func:`instrument` and :func:`uninstrument` do it explicitly (scripts, task workers, tests).
Libraries: ``requests`` (``HTTPAdapter.send``), ``httpx`` (``HTTPTransport`` and
``AsyncHTTPTransport``) and bare ``urllib3`` (``HTTPConnectionPool.urlopen``), each
patched at that one seam, only when importable. Every call
becomes the same log object as an incoming request (same redaction, bounds, delivery), its
entry marked ``_direction: "outgoing"`` and, when made while a logged request was being
served, ``_parent``: that request's ``_id``. See ``docs/outgoing.md``.
"""

from readme_metrics.outgoing.switch import instrument, instrumented, uninstrument

__all__ = ["instrument", "instrumented", "uninstrument"]
