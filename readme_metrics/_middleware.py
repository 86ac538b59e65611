"""``MetricsMiddleware``: one name for WSGI and ASGI apps.

The app tells which it is: an app whose ``__call__`` is a coroutine function (``async
def``, or marked as one for ``asgiref``) is ASGI 3; anything else is WSGI. To say it
yourself, use :class:`~readme_metrics.wsgi.WsgiMetricsMiddleware` or
:class:`~readme_metrics.asgi.AsgiMetricsMiddleware`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig


def is_asgi_app(app: Any) -> bool:
    """True for an ASGI 3 app: a coroutine function or an object with an async ``__call__``."""
    return iscoroutinefunction(app) or iscoroutinefunction(type(app).__call__)


class MetricsMiddleware:
    """Wrap a WSGI or an ASGI app: ``MetricsMiddleware(app, config)``.

    Works as ``app.wsgi_app = MetricsMiddleware(app.wsgi_app, config)`` (Flask) and as
    ``app.add_middleware(MetricsMiddleware, config=config)`` (FastAPI, Starlette).
    """

    def __new__(cls, app: Any, config: MetricsApiConfig) -> Any:
        if is_asgi_app(app):
            from readme_metrics.asgi import AsgiMetricsMiddleware

            return AsgiMetricsMiddleware(app, config)
        from readme_metrics.wsgi import WsgiMetricsMiddleware

        return WsgiMetricsMiddleware(app, config)
