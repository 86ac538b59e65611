"""Compatibility with the existing ``readme-metrics`` package's FastAPI middleware.

Code written for it keeps working unchanged::

    from readme_metrics import MetricsApiConfig
    from readme_metrics.fastapi import ReadMeMetricsMiddleware

    app.add_middleware(ReadMeMetricsMiddleware, config=MetricsApiConfig(api_key, group_fn))

It is the pure ASGI middleware (:class:`~readme_metrics.asgi.AsgiMetricsMiddleware`)
under its old name: same constructor (``app``, ``config``), and the grouping function
still receives a ``starlette.requests.Request`` (sync or ``async def``). Unlike the old
``BaseHTTPMiddleware`` version it never buffers a response, so streaming and server-sent
events pass at the app's pace.
"""

from __future__ import annotations

from readme_metrics.asgi import AsgiMetricsMiddleware


class ReadMeMetricsMiddleware(AsgiMetricsMiddleware):
    """``app.add_middleware(ReadMeMetricsMiddleware, config=config)``: see the module docstring."""


__all__ = ["ReadMeMetricsMiddleware"]
