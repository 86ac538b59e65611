"""An exporter that keeps the logs in memory: for tests (yours and ours)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from readme_metrics.exporters.base import ExportError

Log = dict[str, Any]


class MemoryExporter:
    """Keeps every log it is given, decoded from the very bytes an exporter would send.

    - ``batches``: the logs, grouped as they were exported; ``logs``: all of them, oldest
      first; ``entries``: the HAR entry of each (one per logged exchange).
    - ``fail_with``: set to an HTTP status (e.g. 503) to make the next exports fail as
      the API would; ``None`` (the default) accepts everything.
    - :meth:`wait_for` waits until a number of logs arrived.
    """

    name = "memory"

    def __init__(self) -> None:
        self.batches: list[list[Log]] = []
        self.fail_with: int | None = None
        self._cond = threading.Condition()

    def export(self, logs: Sequence[bytes], timeout: float) -> int:
        status = self.fail_with
        if status is not None:
            raise ExportError(f"{type(self).__name__}.fail_with = {status}", status)
        decoded = [json.loads(log) for log in logs]
        with self._cond:
            self.batches.append(decoded)
            self._cond.notify_all()
        return sum(map(len, logs))

    def shutdown(self) -> None:
        pass

    @property
    def logs(self) -> list[Log]:
        with self._cond:
            return [log for batch in self.batches for log in batch]

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [entry for log in self.logs for entry in log["request"]["log"]["entries"]]

    def clear(self) -> None:
        with self._cond:
            self.batches.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Log]:
        """The logs, once at least ``count`` arrived (AssertionError after ``timeout``)."""
        with self._cond:
            if not self._cond.wait_for(lambda: sum(map(len, self.batches)) >= count, timeout):
                raise AssertionError(
                    f"{sum(map(len, self.batches))} of {count} expected logs arrived within {timeout}s"
                )
            return [log for batch in self.batches for log in batch]
