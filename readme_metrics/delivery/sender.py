"""Retries around an exporter: one batch tried as the policy says, its fate counted.

Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and
jitter, honouring ``Retry-After`` (:class:`readme_metrics.retry.Retry`), until the policy's
attempts or age run out; then the batch is dropped and counted. While a batch is retried
the worker holds only that batch: later events wait in the bounded queue. 401/403 (a bad
or blocked ``api_key``) and other 4xx are not retried: the batch is dropped and counted,
with one rate-limited warning. Delivery is at least once: a batch whose answer was lost
(a timeout) is sent again, and logs carry a unique ``_id``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from readme_metrics._log import warn_limited
from readme_metrics.capture import OutgoingLog
from readme_metrics.delivery.stats import Stats
from readme_metrics.exporters.base import Exporter, ExportError
from readme_metrics.retry import Retry


class Deadlines(Protocol):
    """What a close imposes on retries (:class:`readme_metrics.delivery.queue.BatchQueue`
    offers it): each try's timeout cut to the close deadline, and pauses that end early."""

    @property
    def closes(self) -> int: ...

    def attempt_timeout(self, timeout: float) -> float: ...

    def pause(self, seconds: float, closes: int) -> str: ...


class Sender:
    """Sends batches through ``exporter``, retrying as ``retry`` says, counting in ``stats``."""

    def __init__(self, exporter: Exporter, retry: Retry, stats: Stats, deadlines: Deadlines, timeout: float) -> None:
        self.exporter = exporter
        self.retry = retry
        self.stats = stats
        self.deadlines = deadlines
        self.timeout = timeout

    def send(self, logs: Sequence[bytes], *, retries: bool = True) -> None:
        """Export ``logs``, retrying unless ``retries`` is False (one try); every log ends
        counted as sent or dropped."""
        if not getattr(self.exporter, "accepts_outgoing", True):
            logs = self.without_outgoing(logs)
            if not logs:
                return
        count = len(logs)
        closes = self.deadlines.closes
        policy = self.retry
        first_try = time.monotonic()
        attempt = 0
        last_try = not retries
        while True:
            attempt += 1
            timeout = self.deadlines.attempt_timeout(self.timeout)
            if timeout <= 0:
                self.give_up(count, "shutdown", "shutdown deadline reached")
                return
            if attempt > 1:
                self.stats.retrying()
            try:
                sent_bytes = self.exporter.export(logs, timeout)
            except ExportError as exc:
                error: ExportError = exc
            except Exception as exc:  # a custom exporter's bug: not worth retrying
                self.give_up(count, "transport_error", f"{type(exc).__name__}: {exc}")
                return
            else:
                self.stats.succeeded(count, sent_bytes)
                return
            status = error.status
            if status in (401, 403):
                self.give_up(count, "unauthorized", str(error), warn=False)
                warn_limited(
                    "unauthorized",
                    "readme_metrics: the metrics API refused the API key (HTTP %d): check `api_key` in "
                    "MetricsApiConfig (the key is wrong, revoked or blocked); logs are dropped until it is fixed",
                    status,
                    every=300.0,
                )
                return
            if not policy.is_retryable(status):
                self.give_up(count, "rejected", str(error))
                return
            if last_try:
                self.give_up(count, "shutdown" if retries else "delivery_error", str(error))
                return
            if attempt >= policy.attempts:
                self.give_up(count, "retries_exhausted", f"{error} (after {attempt} tries)")
                return
            pause = policy.wait(attempt, error.retry_after)
            if time.monotonic() + pause - first_try > policy.max_age:
                self.give_up(count, "too_old", f"{error} (retries would exceed max_age={policy.max_age:g}s)")
                return
            self.stats.error(str(error))
            warn_limited(
                "retry",
                "readme_metrics: the metrics API did not take %d logs (%s); retrying in %.1fs",
                count,
                error,
                pause,
            )
            outcome = self.deadlines.pause(pause, closes)
            if outcome == "stop":
                self.give_up(count, "shutdown", f"{error} (shutdown deadline reached)")
                return
            last_try = outcome == "last"

    def without_outgoing(self, logs: Sequence[bytes]) -> Sequence[bytes]:
        """``logs`` without those of outgoing calls, for an exporter that does not take
        them (the hosted ReadMe API); those left out are counted (``outgoing_not_accepted``)."""
        kept = [log for log in logs if type(log) is not OutgoingLog]
        if len(kept) != len(logs):
            self.stats.drop("outgoing_not_accepted", len(logs) - len(kept))
            return kept
        return logs

    def give_up(self, count: int, reason: str, message: str, *, warn: bool = True) -> None:
        """Count a batch of ``count`` logs as given up for ``reason``; warn (rate-limited)
        unless the caller says it more precisely itself."""
        self.stats.gave_up(reason, count, message)
        if warn:
            warn_limited(
                "dropped:" + reason,
                "readme_metrics: %d logs dropped (%s): %s",
                count,
                reason.replace("_", " "),
                message,
            )
