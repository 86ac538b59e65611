"""The SDK's logger, and warnings that cannot flood the app's logs."""

from __future__ import annotations

import logging
import os
import threading
import time

logger = logging.getLogger("readme_metrics")

_lock = threading.Lock()
#: ``{key: {message: (when last logged, how many suppressed since)}}``.
_last: dict[str, dict[str, tuple[float, int]]] = {}


def _reset_after_fork() -> None:
    # A fork while another thread held the lock would leave it held forever in the child.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_after_fork)


def warn_limited(key: str, message: str, *args: object, every: float = 60.0) -> None:
    """Log a warning at most once per ``every`` seconds for each kind of problem; count the rest.

    A kind is ``key`` and the ``message`` template together (before ``%`` formatting): a
    grouping function that raised and one that returned a string share a key but are two
    kinds, so the second is not hidden behind the first. The arguments (an exception's
    text, a status) do not make a new kind.
    """
    now = time.monotonic()
    with _lock:
        kinds = _last.setdefault(key, {})
        last, suppressed = kinds.get(message, (-every, 0))
        if now - last < every:
            kinds[message] = (last, suppressed + 1)
            return
        kinds[message] = (now, 0)
    if suppressed:
        message += " (%d similar warnings suppressed)"
        args = (*args, suppressed)
    logger.warning(message, *args)
