"""What the collector does, whatever serves it: check keys, gate and store batches, prune.

:class:`Service` holds the storage, the accepted API keys, the batch limits, the bound on
batches received at once and the retention thread. The ASGI application
(:mod:`.routes`, :mod:`.app`) calls it; it knows nothing of HTTP framing.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from readme_metrics._log import logger, warn_limited
from readme_metrics.collector.errors import HttpError
from readme_metrics.collector.ingest import DEFAULT_MAX_CONCURRENT_INGESTS, BatchLimits, decode_json_body
from readme_metrics.collector.storage import InvalidLogError, Record, Storage, StorageClosedError, validate_batch

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="readme-metrics collector"'}


def weight_of(record: Record) -> float:
    """How many requests a stored log stands for (its entry's ``_weight``, validated on ingest)."""
    return record.weight


class Service:
    """The collector's state and rules, shared by every request of one process."""

    def __init__(
        self,
        storage: Storage,
        *,
        api_keys: Iterable[str] = (),
        limits: BatchLimits | None = None,
        max_concurrent_ingests: int = DEFAULT_MAX_CONCURRENT_INGESTS,
        public_url: str | None = None,
        refusal_log_every: float = 60.0,
        body_timeout: float = 120.0,
        on_stored: Callable[[Sequence[Record], int], None] | None = None,
        on_refused: Callable[[int], None] | None = None,
    ) -> None:
        self.storage = storage
        self.api_keys = frozenset(api_keys)
        self.limits = limits or BatchLimits()
        self.max_concurrent_ingests = max_concurrent_ingests
        self.public_url = public_url.rstrip("/") if public_url else None
        self.refusal_log_every = refusal_log_every  # seconds between two warnings of one kind
        self.body_timeout = body_timeout  # seconds a body may stall (then 408, closed)
        self.on_stored = on_stored  # the Prometheus counters: (batch, logs new to the store)
        self.on_refused = on_refused  # ... and with the status of each refused one
        self._active = 0  # ingests whose body is being read or stored (under _active_cond)
        self._active_cond = threading.Condition()
        self._stop = threading.Event()  # set under _active_cond: no ingest starts after it
        self._pruner: threading.Thread | None = None

    # -- retention ---------------------------------------------------------------------

    def start_pruner(self) -> None:
        def prune_periodically() -> None:
            interval = max(self.storage.prune_interval, 1.0)
            while not self._stop.wait(interval):
                try:
                    self.storage.prune()
                except Exception:
                    logger.exception("readme_metrics collector: retention pruning failed")

        self.storage.prune()
        self._pruner = threading.Thread(target=prune_periodically, name="readme-metrics-pruner", daemon=True)
        self._pruner.start()

    def begin_stop(self) -> None:
        """From now on a new batch gets 503 (the SDK retries it later)."""
        with self._active_cond:
            self._stop.set()

    def wait_idle(self, deadline: float) -> None:
        """Refuse new batches; wait (until ``deadline``, monotonic) for those being read or stored."""
        self.begin_stop()
        with self._active_cond:
            while self._active and time.monotonic() < deadline:
                self._active_cond.wait(deadline - time.monotonic())

    def finish_stop(self, deadline: float) -> None:
        """:meth:`wait_idle`, then stop the retention thread and close the storage."""
        self.wait_idle(deadline)
        if self._pruner is not None:
            self._pruner.join(max(deadline - time.monotonic(), 0.1))
        self.storage.close()

    # -- ingest ------------------------------------------------------------------------

    def check_key(self, authorization: str | None) -> str:
        """The API key of a Basic ``Authorization`` header, or :class:`HttpError` 401."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not token.strip():
            raise HttpError(401, "missing Basic authorization with the API key", _CHALLENGE)
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and text beyond ASCII
            raise HttpError(401, "malformed Basic authorization", _CHALLENGE) from None
        key = decoded.partition(":")[0]
        if not key:
            raise HttpError(401, "the API key (the Basic user name) is empty", _CHALLENGE)
        if self.api_keys and key not in self.api_keys:
            raise HttpError(401, "unknown API key", _CHALLENGE)
        return key

    def begin_ingest(self) -> None:
        """Count an ingest as active (before its body is read), or 503 once stopping or busy.

        At most ``max_concurrent_ingests`` batches are read, parsed and stored at once, so
        that memory is bounded by that many times what one batch may cost.
        """
        with self._active_cond:
            if self._stop.is_set():
                raise HttpError(503, "the collector is stopping; retry later", {"Retry-After": "5"})
            if self._active >= self.max_concurrent_ingests:
                raise HttpError(
                    503, f"{self._active} batches are being received already; retry later", {"Retry-After": "1"}
                )
            self._active += 1

    def end_ingest(self) -> None:
        with self._active_cond:
            self._active -= 1
            self._active_cond.notify_all()

    def ingest(self, body: bytes, encoding: str) -> dict[str, int]:
        """Validate and store one batch (all or nothing)."""
        payload = decode_json_body(body, encoding, self.limits)
        try:
            records = validate_batch(payload)
        except InvalidLogError as exc:
            raise HttpError(400, str(exc)) from None
        try:
            stored = self.storage.insert(records)
        except StorageClosedError:  # stop() gave up waiting for this batch
            raise HttpError(503, "the collector is stopping; retry later", {"Retry-After": "5"}) from None
        if self.on_stored is not None:
            try:
                self.on_stored(records, stored)
            except Exception:
                logger.exception("readme_metrics collector: counting a batch for /metrics failed")
        return {"accepted": len(records), "stored": stored}

    def refused(self, client: str, error: HttpError) -> None:
        """Count a refused batch; a warning, at most one per answer code per ``refusal_log_every``."""
        if self.on_refused is not None:
            self.on_refused(error.status)
        warn_limited(
            f"collector refused {error.status}",
            "readme_metrics collector: refused a batch from %s: %s (HTTP %d)",
            client,
            error.reason,
            error.status,
            every=self.refusal_log_every,
        )

    def base_url(self, host_header: str | None, fallback: str) -> str:
        if self.public_url:
            return self.public_url
        return f"http://{host_header}" if host_header else fallback

    def health(self) -> dict[str, Any]:
        stored, latest = self.storage.stored_and_latest()  # polled every 2 s by the dashboard
        return {"ok": True, "logs": stored, "latest": latest}
