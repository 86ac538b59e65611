"""The SDK's logger, and warnings that cannot flood the app's logs."""

from __future__ import annotations

import logging
import os
import threading
import time

logger = logging.getLogger("readme_metrics")

_lock = threading.Lock()
_last: dict[str, tuple[float, int]] = {}


def _reset_after_fork() -> None:
    # A fork while another thread held the lock would leave it held forever in the child.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_after_fork)


def warn_limited(key: str, message: str, *args: object, every: float = 60.0) -> None:
    """Log a warning at most once per ``every`` seconds for ``key``; count the rest."""
    now = time.monotonic()
    with _lock:
        last, suppressed = _last.get(key, (-every, 0))
        if now - last < every:
            _last[key] = (last, suppressed + 1)
            return
        _last[key] = (now, 0)
    if suppressed:
        message += " (%d similar warnings suppressed)"
        args = (*args, suppressed)
    logger.warning(message, *args)
