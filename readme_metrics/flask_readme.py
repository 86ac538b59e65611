"""The Flask extension: ``ReadMeMetrics(config, app)`` or ``ReadMeMetrics(config).init_app(app)``.

::

    from flask import Flask
    from readme_metrics import MetricsApiConfig
    from readme_metrics.flask_readme import ReadMeMetrics

    app = Flask(__name__)
    metrics = ReadMeMetrics(MetricsApiConfig(API_KEY, group), app)
    # or, with an application factory:
    metrics = ReadMeMetrics(MetricsApiConfig(API_KEY, group))
    def create_app():
        app = Flask(__name__)
        metrics.init_app(app)
        return app

``init_app`` wraps ``app.wsgi_app`` with :class:`FlaskMetricsMiddleware`, the WSGI
middleware of :mod:`readme_metrics.wsgi`, so everything it guarantees holds for Flask:
streamed responses (``stream_with_context``, generators) and ``send_file`` pass through
chunk by chunk, the body of every method is logged (as the app reads it, or after the
response when the app did not read it), and an app error is logged as the 500 the client
got.

The grouping function (and the ``skip`` hook) receive a request of the app's own
``request_class`` (a ``flask.Request``) built over the same WSGI environ, before the view
runs: ``headers``, ``args``, ``cookies``, ``authorization``, ``path``, ``remote_addr`` and the
like all work. It is *shallow*: it cannot read the body (that would steal it from the
view), and it is not the ``flask.request`` context global (no request context exists yet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from readme_metrics._log import logger
from readme_metrics.wsgi import WsgiMetricsMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment
    from flask import Flask

    from readme_metrics.config import MetricsApiConfig

__all__ = ["FlaskMetricsMiddleware", "ReadMeMetrics"]

EXTENSION_NAME = "readme_metrics"


class FlaskMetricsMiddleware(WsgiMetricsMiddleware):
    """The WSGI middleware, giving hooks a ``flask.Request`` of the app's ``request_class``."""

    def __init__(self, wsgi_app: WSGIApplication, config: MetricsApiConfig, flask_app: Flask) -> None:
        super().__init__(wsgi_app, config)
        self.request_class = flask_app.request_class

    def make_request(self, environ: WSGIEnvironment) -> Any:
        # populate_request=False: the app's own request object stays the one in the environ.
        return self.request_class(environ, populate_request=False, shallow=True)


class ReadMeMetrics:
    """Log every request of a Flask app to the metrics API (see the module docstring)."""

    def __init__(self, config: MetricsApiConfig, app: Flask | None = None) -> None:
        self.config = config
        self.middleware: FlaskMetricsMiddleware | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app``; a second call for the same app does nothing."""
        if EXTENSION_NAME in app.extensions:
            logger.warning("readme_metrics: ReadMeMetrics is already set up on app %r", app.name)
            return
        self.middleware = FlaskMetricsMiddleware(app.wsgi_app, self.config, app)
        app.wsgi_app = self.middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_NAME] = self
