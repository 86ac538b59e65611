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
from readme_metrics._policy import view_route
from readme_metrics.wsgi import WsgiMetricsMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

    from readme_metrics.capture import Capture
    from readme_metrics.config import MetricsApiConfig

__all__ = ["FlaskMetricsMiddleware", "ReadMeMetrics"]

EXTENSION_NAME = "readme_metrics"
#: Where the extension finds a request's capture in the WSGI environ.
CAPTURE_KEY = "readme_metrics.capture"
#: Where it keeps the view's response (a ``flask.Response``) for the response-aware hooks.
RESPONSE_KEY = "readme_metrics.response"


class FlaskMetricsMiddleware(WsgiMetricsMiddleware):
    """The WSGI middleware, giving hooks a ``flask.Request`` of the app's ``request_class``."""

    def __init__(self, wsgi_app: WSGIApplication, config: MetricsApiConfig, flask_app: Flask) -> None:
        super().__init__(wsgi_app, config)
        self.request_class = flask_app.request_class
        self.view_functions = flask_app.view_functions
        flask_app.before_request(self._before_view)
        if self.policies.after_response:  # the hooks get Flask's own response
            flask_app.after_request(self._after_view)
        from flask import got_request_exception

        # Flask answers a view's exception with its own 500: the signal tells us what it was.
        got_request_exception.connect(self._on_exception, flask_app, weak=False)

    def make_request(self, environ: WSGIEnvironment) -> Any:
        # populate_request=False: the app's own request object stays the one in the environ.
        return self.request_class(environ, populate_request=False, shallow=True)

    # -- per-view policies (@Route(...) on a view; docs/routes.md) ------------------------

    def _begin(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        exchange = super()._begin(environ, start_response)
        if exchange is not None:
            environ[CAPTURE_KEY] = exchange.capture  # for _before_view, once Flask has routed
        return exchange

    def _before_view(self) -> None:
        """Flask's ``before_request``: the view's policy applies before the view reads the body."""
        from flask import request

        capture = request.environ.get(CAPTURE_KEY)
        if capture is not None:
            self.routed(capture, request.environ)

    def _after_view(self, response: Any) -> Any:
        from flask import request

        request.environ[RESPONSE_KEY] = response
        return response

    def response_of(self, environ: WSGIEnvironment) -> Any:
        return environ.get(RESPONSE_KEY)

    def _on_exception(self, sender: Any, exception: BaseException, **extra: Any) -> None:
        from flask import request

        capture = request.environ.get(CAPTURE_KEY)
        if capture is not None and capture.extras is not None and isinstance(exception, Exception):
            capture.extras.exception = exception  # formatted on the worker
            if capture.error is None:
                capture.error = type(exception).__name__

    def routed(self, capture: Capture, environ: WSGIEnvironment) -> None:
        first = capture.extras is not None and capture.extras.route is None
        super().routed(capture, environ)
        if first:
            rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
            endpoint = getattr(rule, "endpoint", None)
            if endpoint is not None:
                self.policies.view(capture, view_route(self.view_functions.get(endpoint)))


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
