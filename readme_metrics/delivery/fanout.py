"""Several exporters: each log, built once, goes to every one through its own outbox.

With one exporter the client sends its batches straight through one
:class:`~readme_metrics.delivery.sender.Sender` (no extra thread, no extra hop). With
several, the capture queue's handler hands each batch of encoded logs to every
:class:`Outbox`: a :class:`~readme_metrics.delivery.queue.BatchQueue` of encoded logs
(nothing left to prepare) with its own bounds, worker thread, sender (its own retries)
and counters. So one exporter that fails or hangs never holds back another: its outbox
fills up to its bounds while the others go on, and what it refuses then is counted as
dropped (``outbox_full``) for that exporter only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from readme_metrics._log import logger, warn_limited
from readme_metrics.delivery.queue import BatchQueue
from readme_metrics.delivery.sender import Sender
from readme_metrics.delivery.stats import Stats
from readme_metrics.exporters.base import Exporter
from readme_metrics.exporters.jsonl import JsonLinesExporter
from readme_metrics.exporters.otlp import OtlpExporter
from readme_metrics.exporters.readme import ReadMeExporter
from readme_metrics.retry import Retry


def exporter_names(exporters: Sequence[Exporter]) -> list[str]:
    """A name per exporter for ``stats()``: its ``name`` attribute (``readme``, ``jsonl``,
    ``otlp``, ``memory``) or its class's, made unique with ``-2``, ``-3``..."""
    names: list[str] = []
    for exporter in exporters:
        base = str(getattr(exporter, "name", "") or type(exporter).__name__.lower())
        name, count = base, 1
        while name in names:
            count += 1
            name = f"{base}-{count}"
        names.append(name)
    return names


def exporters_of(config: Any) -> list[Exporter]:
    """The exporters ``config`` names: ``README_METRICS_EXPORTERS`` (parsed by the
    config), else ``exporters=``, else the ReadMe exporter of ``api_key``/``metrics_server``."""
    specs = config.exporter_specs
    if specs:
        return [_from_spec(kind, argument, config) for kind, argument in specs]
    if config.exporters:
        return list(config.exporters)
    return [ReadMeExporter.from_config(config)]


def _from_spec(kind: str, argument: str, config: Any) -> Exporter:
    if kind == "readme":
        return ReadMeExporter(config.api_key, argument or config.metrics_server, compress=config.compress)
    if kind == "jsonl":
        return JsonLinesExporter(sys.stdout if argument == "-" else argument)
    if kind == "otlp":
        return OtlpExporter(argument or None)
    raise ValueError(f"unknown exporter {kind!r}")  # the config checked the kinds already


def _as_ready(logs: list[bytes]) -> list[tuple[bytes, int]]:
    return [(log, len(log)) for log in logs]


class Outbox:
    """One exporter's queue, worker, sender and counters."""

    def __init__(self, name: str, exporter: Exporter, config: Any) -> None:
        self.name = name
        self.stats = Stats()
        self.queue: BatchQueue[bytes, bytes] = BatchQueue(
            self.send,
            _as_ready,
            max_events=config.max_queue_events,
            max_bytes=config.max_queue_bytes,
            buffer_length=config.buffer_length,
            flush_interval=config.flush_interval,
            max_batch=config.max_batch_events,
            chunk=config.max_batch_events,
            pace=0.0,
            name=f"readme-metrics-{name}",
        )
        self.sender = Sender(exporter, config.retry or Retry(), self.stats, self.queue, config.timeout)

    def offer(self, logs: Sequence[bytes]) -> None:
        """Queue ``logs`` without blocking; those refused (full) are counted as dropped."""
        put = self.queue.put
        refused = sum(1 for log in logs if not put(log, len(log)))
        if refused:
            self.stats.drop("outbox_full", refused)
            warn_limited(
                "outbox_full:" + self.name,
                "readme_metrics: the %s exporter's queue is full (%d events); dropping its logs",
                self.name,
                self.queue.max_events,
            )

    def send(self, logs: list[bytes], *, retries: bool = True) -> None:
        """Send one batch through the sender. Never raises."""
        try:
            self.sender.send(logs, retries=retries)
        except Exception as exc:
            logger.exception("readme_metrics: unexpected error while delivering logs to %s", self.name)
            self.stats.gave_up("internal_error", len(logs), f"{type(exc).__name__}: {exc}")

    def snapshot(self) -> dict[str, Any]:
        snapshot = self.stats.snapshot()
        waiting, queue_bytes = self.queue.waiting()
        snapshot.update(queued=self.queue.accepted, waiting=waiting, queue_bytes=queue_bytes)
        return snapshot


class Fanout:
    """The outboxes of a client's exporters, handled together."""

    def __init__(self, exporters: Sequence[Exporter], config: Any) -> None:
        names = exporter_names(exporters)
        self.outboxes = [Outbox(name, exp, config) for name, exp in zip(names, exporters, strict=True)]

    def offer(self, logs: Sequence[bytes]) -> None:
        for outbox in self.outboxes:
            outbox.offer(logs)

    def send_now(self, logs: Sequence[bytes]) -> None:
        """``background_worker_mode=False``: one try per exporter, in the caller's thread."""
        for outbox in self.outboxes:
            outbox.send(list(logs), retries=False)

    def flush(self, deadline: float | None) -> bool:
        """Wait until every outbox has handed over what it holds (all flush at once)."""
        done = True
        for outbox in self.outboxes:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = outbox.queue.flush(remaining) and done
        return done

    def begin_close(self, deadline: float) -> None:
        for outbox in self.outboxes:
            outbox.queue.begin_close(deadline)

    def finish_close(self, deadline: float) -> int:
        """Finish every outbox's close; the logs none could deliver in time (counted)."""
        undelivered = 0
        for outbox in self.outboxes:
            try:
                left, in_flight = outbox.queue.finish_close(deadline)
                if left:
                    outbox.stats.drop("shutdown", left)
                undelivered += left + in_flight
            finally:
                outbox.sender.exporter.shutdown()
        return undelivered

    def reset(self) -> None:
        """In a forked child: empty outboxes, zeroed counters."""
        for outbox in self.outboxes:
            outbox.queue.reset()
            outbox.stats.reset()

    def shutdown(self) -> None:
        for outbox in self.outboxes:
            outbox.queue.finish_close(time.monotonic())
            outbox.sender.exporter.shutdown()

    def snapshots(self) -> dict[str, dict[str, Any]]:
        return {outbox.name: outbox.snapshot() for outbox in self.outboxes}
