"""The SDK's own HTTP calls, marked: outgoing capture (:mod:`readme_metrics.outgoing`) never
logs a call made while :data:`OWN_CALL` is true, whatever the configuration, so delivering
logs can never produce logs (no loop). Set around the delivery posts
(:mod:`readme_metrics.exporters.http`) and the project lookup (:mod:`readme_metrics.doclink`);
every thread the SDK starts is named ``readme-metrics*``, which outgoing capture skips too
(a custom exporter's calls, made on the delivery worker)."""

from __future__ import annotations

from contextvars import ContextVar

#: True while the SDK itself makes an HTTP call.
OWN_CALL: ContextVar[bool] = ContextVar("readme_metrics_own_call", default=False)
