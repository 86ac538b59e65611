"""HAR export: what a ``POST /api/export.har`` body asks for, and the HAR 1.2 document.

The body is a JSON object with ``ids`` (an array of log ids) or ``filters`` (an object
of the dashboard's filters: ``since``, ``until``, ``endpoint``, ``status``, ``group``,
``q``, ``meta_key``, ``meta_value``, ``direction``, ``parent``; each a string or a
number, ``null`` meaning absent), not both. ``{}`` or an empty body exports every log.
Anything else is refused with 400, before any query runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from readme_metrics._version import __version__
from readme_metrics.collector.errors import HttpError
from readme_metrics.collector.storage import FILTER_NAMES, Filters, Log

EXPORT_LIMIT = 10_000
_FILTER_NAMES = FILTER_NAMES


def _filters(raw: Any) -> Filters:
    if not isinstance(raw, dict):
        raise HttpError(400, "filters must be an object of filter names to values")
    unknown = sorted(set(raw) - set(_FILTER_NAMES))
    if unknown:
        raise HttpError(400, f"unknown filter {unknown[0][:40]!r} (use {', '.join(_FILTER_NAMES)})")
    params = {}
    for name, value in raw.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise HttpError(400, f"filter {name} must be a string or a number")
        params[name] = str(value)
    try:
        return Filters.from_query(params)
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None


def _ids(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(i, str) for i in raw):
        raise HttpError(400, "ids must be an array of log ids (strings)")
    for log_id in raw:
        try:
            log_id.encode("utf-8")
        except UnicodeEncodeError:
            raise HttpError(400, "a log id holds a lone UTF-16 surrogate") from None
    return raw


def export_request(request: Any) -> tuple[list[str] | None, Filters]:
    """(ids or None, filters) of a parsed ``POST /api/export.har`` body; :class:`HttpError` 400."""
    if not isinstance(request, dict):
        raise HttpError(400, "the body must be a JSON object: {'ids': [...]} or {'filters': {...}}")
    unknown = sorted(set(request) - {"ids", "filters"})
    if unknown:
        raise HttpError(400, f"unknown field {unknown[0][:40]!r} (use ids or filters)")
    ids, filters = request.get("ids"), request.get("filters")
    if ids is not None and filters is not None:
        raise HttpError(400, "give ids or filters, not both")
    if ids is not None:
        return _ids(ids), Filters()
    return None, _filters(filters) if filters is not None else Filters()


def har_of(logs: Iterable[Log]) -> dict[str, Any]:
    """A HAR 1.2 document of stored log objects (one entry each; ``_readmeLogId`` names the log)."""
    entries = []
    for log in logs:
        for raw in log["request"]["log"]["entries"][:1]:
            entry = dict(raw)
            entry.pop("pageref", None)  # there are no pages in this file
            entry.setdefault("cache", {})
            entry.setdefault("timings", {"send": 0, "wait": entry.get("time", 0), "receive": 0})
            entry["_readmeLogId"] = log["_id"]
            group = log.get("group") or {}
            if group.get("label"):
                entry["_caller"] = group["label"]
            entries.append(entry)
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "readme-metrics collector", "version": __version__},
            "entries": entries,
        }
    }
