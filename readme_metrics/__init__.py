"""readme_metrics: log every HTTP exchange an API serves to an API-metrics service.

Public API::

    from readme_metrics import MetricsApiConfig, MetricsMiddleware

See README.md for the guide and every option.
"""

from readme_metrics._middleware import MetricsMiddleware
from readme_metrics._version import __version__
from readme_metrics.config import MetricsApiConfig

__all__ = ["MetricsApiConfig", "MetricsMiddleware", "__version__"]
