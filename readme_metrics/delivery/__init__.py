"""Delivery: from the request path's captures to an exporter, off the request path.

- :mod:`~readme_metrics.delivery.queue`: the bounded queue and its one worker thread;
- :mod:`~readme_metrics.delivery.sender`: retries around an exporter;
- :mod:`~readme_metrics.delivery.stats`: the counters (``stats()``);
- :mod:`~readme_metrics.delivery.client`: :class:`Client`, which puts them together with
  the builder (:mod:`readme_metrics.build`) for one configuration.

The exporters (where logs go) are in :mod:`readme_metrics.exporters`. The user's manual
is ``docs/delivery.md``.
"""

from readme_metrics.delivery.client import Client, client_for, close_all
from readme_metrics.delivery.queue import BATCH_BYTES, BatchQueue
from readme_metrics.exporters.base import ExportError

#: The name this error had before exporters (kept for code that catches it).
DeliveryError = ExportError

__all__ = ["BATCH_BYTES", "BatchQueue", "Client", "DeliveryError", "ExportError", "client_for", "close_all"]
