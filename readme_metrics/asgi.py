"""The ASGI middleware (being written: issue 3)."""

from __future__ import annotations

from typing import Any


class AsgiMetricsMiddleware:
    def __init__(self, app: Any, config: Any) -> None:
        raise NotImplementedError("the ASGI middleware is not written yet")
