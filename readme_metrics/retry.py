"""The retry policy of deliveries: a small immutable value object.

A batch that could not be delivered because of a connection error, a timeout, or an
answer of 408, 429 or 5xx is tried again after a pause that doubles from
``backoff_factor`` up to ``backoff_max``, shortened at random by up to ``jitter`` of
itself (so that many processes that failed together do not retry together). A
``Retry-After`` header (seconds or an HTTP date) is honoured: the pause lasts at least
that long, capped at ``retry_after_max``. A batch is given up, and counted as dropped,
after ``attempts`` tries or when the next try would start more than ``max_age`` seconds
after the first one.

Override it per configuration::

    from readme_metrics import MetricsApiConfig
    from readme_metrics.retry import Retry

    config = MetricsApiConfig(api_key, group_fn, retry=Retry(attempts=4, backoff_max=5))

``Retry(attempts=1)`` turns retries off. The defaults (see :class:`Retry`) ride out an
outage of about two minutes per batch; while a batch waits, later events wait in the
bounded queue.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime

#: Statuses worth another try: request timeout, rate limiting, and every server error.
RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 429, *range(500, 600)})


@dataclass(frozen=True)
class Retry:
    """How a batch is tried again. Immutable; compare and copy with ``dataclasses.replace``.

    - ``attempts`` (10): tries of one batch in all, the first included (1 = no retry).
    - ``backoff_factor`` (0.5 s): the pause before retry *n* is
      ``backoff_factor * 2 ** (n - 1)``: 0.5, 1, 2, 4, 8, 16, 30, 30, 30 s by default.
    - ``backoff_max`` (30 s): no pause computed from the backoff exceeds this.
    - ``jitter`` (0.5): each pause is shortened by a random fraction of itself, up to
      this fraction (0 = exact pauses, 1 = anything from 0 to the full pause).
    - ``max_age`` (300 s): a batch is dropped rather than tried again once the retry
      would start later than this after its first try.
    - ``retry_after_max`` (60 s): the longest ``Retry-After`` that is obeyed as such;
      longer ones are cut to this.
    - ``statuses``: the HTTP statuses that are retried (408, 429 and 5xx). Connection
      errors and timeouts are always retried. 401 and 403 never are.
    """

    attempts: int = 10
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    max_age: float = 300.0
    retry_after_max: float = 60.0
    statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise ValueError(f"Retry.attempts must be an integer >= 1, got {self.attempts!r}")
        for name in ("backoff_factor", "backoff_max", "max_age", "retry_after_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"Retry.{name} must be a number >= 0, got {value!r}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)) or not 0 <= self.jitter <= 1:
            raise ValueError(f"Retry.jitter must be a number from 0 to 1, got {self.jitter!r}")
        statuses = self.statuses
        if not isinstance(statuses, frozenset):
            if isinstance(statuses, (str, bytes)) or not isinstance(statuses, Iterable):
                raise ValueError("Retry.statuses must be a set of HTTP status codes")
            statuses = frozenset(statuses)
        for status in statuses:
            if not isinstance(status, int) or not 100 <= status <= 599:
                raise ValueError(f"Retry.statuses must hold HTTP status codes, got {status!r}")
        if statuses & {401, 403}:
            raise ValueError("Retry.statuses cannot hold 401 or 403: a refused API key is never retried")
        object.__setattr__(self, "statuses", statuses)

    def is_retryable(self, status: int | None) -> bool:
        """Whether a failure is worth another try (``None``: no answer at all)."""
        return status is None or status in self.statuses

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """The pause before retry number ``retry`` (1 = the first retry), jitter applied.

        ``rand`` returns a number in [0, 1); 0 gives the full pause.
        """
        if retry < 1:
            return 0.0
        exponent = min(retry - 1, 64)  # 2 ** 64 * any sane factor is past any cap
        pause = min(self.backoff_max, self.backoff_factor * 2.0**exponent)
        return pause * (1.0 - self.jitter * rand())

    def wait(self, retry: int, retry_after: str | None = None, rand: Callable[[], float] = random.random) -> float:
        """The pause before retry number ``retry``: the backoff, or longer if the API
        said so in ``Retry-After`` (capped at ``retry_after_max``)."""
        pause = self.backoff(retry, rand)
        asked = parse_retry_after(retry_after)
        if asked is not None:
            pause = max(pause, min(asked, self.retry_after_max))
        return pause


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date.

    ``None`` when absent or unreadable; a date in the past gives 0. ``now`` is the
    wall-clock time to measure a date from (default: ``time.time()``).
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": a UTC time from an unknown zone
        when = when.replace(tzinfo=timezone.utc)
    seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds)
