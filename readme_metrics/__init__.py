"""readme_metrics: log every HTTP exchange an API serves to an API-metrics service.

Public API::

    from readme_metrics import MetricsApiConfig, MetricsMiddleware, Route

See README.md for the guide and every option.
"""

from readme_metrics._middleware import MetricsMiddleware
from readme_metrics._version import __version__
from readme_metrics.config import MetricsApiConfig
from readme_metrics.routes import Route

__all__ = ["MetricsApiConfig", "MetricsMiddleware", "Route", "__version__"]
