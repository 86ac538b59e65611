"""HAR export: the HAR 1.2 document of stored logs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from readme_metrics._version import __version__
from readme_metrics.collector.storage import Log

EXPORT_LIMIT = 10_000


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
