"""The collector as an ASGI application, for uvicorn or any ASGI server or process manager.

::

    README_METRICS_DB=/var/lib/readme-metrics/logs.sqlite3 README_METRICS_HOST=0.0.0.0 \\
    README_METRICS_TOKEN=... uvicorn readme_metrics.collector.app:app --host 0.0.0.0 --workers 4

``app`` is made from the environment (:class:`.settings.Settings`) the first time it is
looked up; :func:`create_app` makes one from given settings (tests, ``serve``).
``README_METRICS_HOST`` tells the application the address it is bound to, which decides
the access rules (:mod:`.access`); a request arriving on a non-loopback address needs a
credential whatever it says. With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory (``serve --workers`` does) so that ``/metrics`` counts them all.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from readme_metrics.collector.access import check_bind
from readme_metrics.collector.metrics import Metrics
from readme_metrics.collector.routes import Routes
from readme_metrics.collector.service import Service
from readme_metrics.collector.settings import Settings, open_store
from readme_metrics.collector.storage import Storage

__all__ = ["Settings", "create_app"]

#: Seconds the application waits, when it stops, for batches being read or stored.
STOP_TIMEOUT = 10.0


def create_app(
    settings: Settings | None = None, *, storage: Storage | None = None, refusal_log_every: float = 60.0
) -> Starlette:
    """The collector's ASGI application (``ValueError`` for settings it refuses to serve).

    ``app.state.service`` is its :class:`.service.Service`. The storage (``storage``, or
    the one the settings name) is closed when the application's lifespan ends.
    """
    settings = settings or Settings()
    credentials = settings.credentials
    check_bind(settings.host, credentials)
    store = storage if storage is not None else open_store(settings)
    metrics = Metrics(store.count, store.size_bytes, settings.max_routes)
    service = Service(
        store,
        api_keys=settings.api_keys,
        limits=settings.limits,
        max_concurrent_ingests=settings.max_concurrent_ingests,
        public_url=settings.public_url,
        refusal_log_every=refusal_log_every,
        body_timeout=settings.body_timeout,
        on_stored=metrics.stored_batch,
        on_refused=metrics.refused,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        service.start_pruner()
        yield
        await run_in_threadpool(service.finish_stop, time.monotonic() + STOP_TIMEOUT)

    routes = Routes(service, metrics, credentials, settings.host)
    application = routes.application(lifespan)
    application.state.service = service
    application.state.loopback_only = routes.loopback_only
    application.state.metrics = metrics
    return application


_made: dict[str, Starlette] = {}


def __getattr__(name: str) -> Any:
    """``app``: made from the environment on first use (``uvicorn ...collector.app:app``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if "app" not in _made:
        _made["app"] = create_app(Settings.from_env())
    return _made["app"]
