"""What every adapter (WSGI, ASGI, Django) holds for its configuration.

Per configuration, shared by all requests: the delivery client, the documentation link,
the compiled filters and hooks, and the body bound. Per-request state never lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from readme_metrics._hooks import Hooks
from readme_metrics._log import logger
from readme_metrics._policy import Policies
from readme_metrics.config import mark_in_use
from readme_metrics.delivery import client_for
from readme_metrics.doclink import doclink_for

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig


class Adapter:
    """The base of the middlewares: ``client``, ``doclink``, ``hooks``, ``max_body``."""

    def __init__(self, config: MetricsApiConfig) -> None:
        self.config = config
        # Read below once and for all: 3.4.0's upper-case attributes refuse changes from now on.
        mark_in_use(config)
        if config.grouping_function is None:
            logger.warning(
                "readme_metrics: no grouping function (MetricsApiConfig(api_key, None)): every request is "
                "logged under the group 'anonymous' (readme-metrics 3.4.0 logged nothing then); pass a "
                "function returning {'api_key': ..., 'label': ..., 'email': ...}, or None to leave a request out"
            )
        self.client = client_for(config)
        self.doclink = doclink_for(config)
        self.hooks = Hooks(config)
        #: Route policies, sampling and the response-aware hooks (``docs/routes.md``).
        self.policies = Policies(config)
        #: Most bytes of each body copied for the log (0 with ``log_body=False``).
        self.max_body = config.max_body_bytes if config.log_body else 0
        if config.capture_outgoing:  # the first middleware with this config instruments
            from readme_metrics.outgoing import instrument

            instrument(config)

    def stats(self) -> dict[str, Any]:
        """The delivery counters (events queued, sent, dropped by reason, retried, ...):
        see ``docs/delivery.md``."""
        return self.client.stats()
