"""Shared test setup."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from readme_metrics import _log


@pytest.fixture(autouse=True)
def fresh_warning_limits() -> Iterator[None]:
    """Each test sees the SDK's rate-limited warnings afresh."""
    with _log._lock:
        _log._last.clear()
    yield
