"""Where outgoing-call logs can go: every destination but ReadMe's hosted API.

The hosted API counts the calls made *to* your API, so it never gets the calls your API
makes (a ReadMe exporter pointing there drops them, counted as ``outgoing_not_accepted``).
Kept apart from :mod:`readme_metrics.config`, which checks it when a config asks for
``capture_outgoing``, as :func:`readme_metrics.outgoing.instrument` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HOSTED_METRICS_SERVER = "https://metrics.readme.io"


def outgoing_destination_error(
    exporter_specs: Sequence[tuple[str, str]] | None, exporters: Sequence[Any] | None, metrics_server: str
) -> str | None:
    """Why a configuration (its ``README_METRICS_EXPORTERS`` specs, ``exporters=`` and
    ``metrics_server``) has nowhere to send outgoing logs, or None when some destination
    takes them."""
    if exporter_specs:
        servers = [(arg or metrics_server).rstrip("/") if kind == "readme" else "" for kind, arg in exporter_specs]
        takes = any(server != HOSTED_METRICS_SERVER for server in servers)
    elif exporters:
        takes = any(getattr(exporter, "accepts_outgoing", True) for exporter in exporters)
    else:
        takes = metrics_server != HOSTED_METRICS_SERVER
    if takes:
        return None
    return (
        f"the only destination is ReadMe's hosted API ({HOSTED_METRICS_SERVER}), which counts the calls made to "
        "your API and never receives the calls your API makes; add a destination that takes them: "
        "metrics_server= (or README_METRICS_SERVER) pointing to your collector (readme-metrics serve), or "
        "exporters=[...] with a JsonLinesExporter, an OtlpExporter or a ReadMeExporter to your collector"
    )
