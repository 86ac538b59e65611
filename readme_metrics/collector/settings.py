"""The collector's settings: from ``serve``'s options or from the environment.

Every option of ``readme-metrics serve`` has an environment variable, ``README_METRICS_``
and the option's name in capitals (``--max-batch-mb`` -> ``README_METRICS_MAX_BATCH_MB``);
``README_METRICS_API_KEYS`` holds the keys, comma-separated. The ASGI application
(``uvicorn readme_metrics.collector.app:app``) reads only the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from readme_metrics.collector.access import Credentials
from readme_metrics.collector.ingest import (
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_DEPTH,
    DEFAULT_MAX_BATCH_VALUES,
    DEFAULT_MAX_CONCURRENT_INGESTS,
    BatchLimits,
)
from readme_metrics.collector.storage import DEFAULT_DB, Storage, open_storage

PREFIX = "README_METRICS_"
#: Distinct routes /metrics labels (per process); more are counted under "other".
DEFAULT_MAX_ROUTES = 200


@dataclass(frozen=True)
class Settings:
    db: str = DEFAULT_DB
    host: str = "127.0.0.1"  # where it is bound: decides the access rules
    api_keys: tuple[str, ...] = ()
    token: str | None = None
    basic_auth: str | None = None
    max_age_days: float = 30.0
    max_rows: int = 100_000
    max_batch_mb: float = DEFAULT_MAX_BATCH_BYTES / 1024 / 1024
    max_batch_values: int = DEFAULT_MAX_BATCH_VALUES
    max_batch_depth: int = DEFAULT_MAX_BATCH_DEPTH
    max_concurrent_ingests: int = DEFAULT_MAX_CONCURRENT_INGESTS
    prune_interval: float = 60.0
    public_url: str | None = None
    max_routes: int = DEFAULT_MAX_ROUTES
    body_timeout: float = 120.0  # seconds a request body may stall

    @property
    def credentials(self) -> Credentials:
        return Credentials.of(self.token, self.basic_auth)

    @property
    def limits(self) -> BatchLimits:
        return BatchLimits(max(1, int(self.max_batch_mb * 1024 * 1024)), self.max_batch_values, self.max_batch_depth)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``README_METRICS_*`` variables; ``ValueError`` names a bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            name = PREFIX + ("API_KEYS" if field.name == "api_keys" else field.name.upper())
            text = env.get(name)
            if text is None or text == "":
                continue
            default = field.default
            try:
                if field.name == "api_keys":
                    values[field.name] = tuple(k.strip() for k in text.split(",") if k.strip())
                elif isinstance(default, bool) or not isinstance(default, int | float):
                    values[field.name] = text
                else:
                    values[field.name] = type(default)(text)
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a valid {type(default).__name__}") from None
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The environment that :meth:`from_env` reads back as these settings."""
        env = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field.name == "api_keys":
                env[PREFIX + "API_KEYS"] = ",".join(value)
            else:
                env[PREFIX + field.name.upper()] = str(value)
        return env


def open_store(settings: Settings) -> Storage:
    """The storage of the settings (the one place the collector opens it)."""
    return open_storage(
        settings.db,
        max_age_days=settings.max_age_days,
        max_rows=settings.max_rows,
        prune_interval=settings.prune_interval,
    )
