"""Turning outgoing capture on and off: :func:`instrument`, :func:`uninstrument`."""

from __future__ import annotations

import threading
from typing import Any

from readme_metrics._destinations import outgoing_destination_error
from readme_metrics._links import OutgoingLinks
from readme_metrics.outgoing import calls, for_httpx, for_requests, for_urllib3

#: Each library: its name and its (patch, unpatch) pair. ``patch`` is False when the
#: library is not installed (nothing is imported for it then).
LIBRARIES = {
    "requests": (for_requests.patch, for_requests.unpatch),
    "httpx": (for_httpx.patch, for_httpx.unpatch),
    "urllib3": (for_urllib3.patch, for_urllib3.unpatch),
}

_lock = threading.Lock()
_patched: list[str] = []


def instrument(config: Any) -> tuple[str, ...]:
    """Record the app's outgoing calls with ``config`` (its redaction, bounds, filters and
    destinations), in every installed library; returns their names. Calls made while a
    request is served by a middleware with another instrumented configuration use that
    one; calls outside any request use the first configuration instrumented. Calling it
    again (with this or another configuration) patches nothing twice. Raises ValueError
    when the configuration's only destination is the hosted ReadMe API."""
    problem = outgoing_destination_error(config.exporter_specs, config.exporters, config.metrics_server)
    if problem:
        raise ValueError(f"readme_metrics.outgoing.instrument: {problem}")
    with _lock:
        if config not in calls.recorders:
            recorder = calls.recorders[config] = calls.Recorder(config)
            if not calls.default:
                calls.default.append(recorder)
        for name, (patch, _) in LIBRARIES.items():
            if name not in _patched and patch():
                _patched.append(name)
        OutgoingLinks.on = True
        return tuple(_patched)


def uninstrument() -> None:
    """Stop recording outgoing calls: every library gets its own functions back (the very
    objects), and every configuration is forgotten. Responses already being read are
    still finished and logged."""
    with _lock:
        OutgoingLinks.on = False
        for name in _patched:
            LIBRARIES[name][1]()
        _patched.clear()
        calls.recorders.clear()
        calls.default.clear()


def instrumented() -> tuple[str, ...]:
    """The libraries whose calls are being recorded now."""
    return tuple(_patched)
