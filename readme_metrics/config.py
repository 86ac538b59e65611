"""`MetricsApiConfig`: every setting of the SDK, validated once at construction.

The positional and keyword arguments of the existing ``readme-metrics`` package keep their
meaning; everything after ``timeout`` is ours and keyword-only. A setting that cannot work
raises :class:`ValueError` here, never at the first request.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any, cast

from readme_metrics.retry import Retry

DEFAULT_METRICS_SERVER = "https://metrics.readme.io"
#: Default of ``max_body_bytes``: most bytes of each body kept for the log.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
METRICS_SERVER_ENV = "README_METRICS_SERVER"

#: The grouping function receives the framework's request object and returns a mapping
#: with ``api_key`` (or ``id``), ``label`` and ``email``, or ``None`` to skip the request.
GroupingFunction = Callable[[Any], Any]


def _resolve_callable(value: Any, name: str) -> Callable[..., Any] | None:
    """Accept a callable, a dotted import path (``"pkg.module.func"``) or ``None``."""
    if value is None or callable(value):
        return cast("Callable[..., Any] | None", value)
    if isinstance(value, str):
        module_name, _, attr = value.rpartition(".")
        if not module_name:
            raise ValueError(f"{name}: {value!r} is not a dotted path such as 'pkg.module.func'")
        try:
            resolved = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"{name}: cannot import {value!r}: {exc}") from exc
        if not callable(resolved):
            raise ValueError(f"{name}: {value!r} is not callable")
        return resolved  # type: ignore[no-any-return]
    raise ValueError(f"{name} must be a callable or a dotted import path, not {type(value).__name__}")


def _str_list(value: Iterable[str] | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of strings")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"{name} must hold non-empty strings, got {item!r}")
    return items


def _number(value: Any, name: str, *, minimum: float, integer: bool = False) -> Any:
    number = float("nan")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (isinstance(value, int) or not integer):
        number = float(value)
    if not number >= minimum:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} >= {minimum}, got {value!r}")
    return value


class MetricsApiConfig:
    """Settings for the metrics middleware.

    Arguments shared with the existing ``readme-metrics`` package:

    - ``api_key``: the ReadMe API key; sent only as the Basic auth user name.
    - ``grouping_function``: callable (or dotted import path) given the request; returns
      ``{"api_key": ..., "label": ..., "email": ...}`` or ``None`` to not log the request.
    - ``base_log_url``: base of the ``x-documentation-url`` links to logs.
    - ``buffer_length``: events that trigger a send (default 1: send as soon as possible).
    - ``development_mode``: marks logs as coming from a development environment.
    - ``background_worker_mode``: send from a worker thread (default) or synchronously.
    - ``allowlist`` / ``denylist``: keys to keep only / to redact (denylist wins);
      ``whitelist`` / ``blacklist`` are their deprecated aliases.
    - ``allowed_http_hosts``: log only requests to these hosts (``*.example.com`` allowed).
    - ``timeout``: seconds allowed for one call to the metrics API.

    Our own keyword-only options are listed in README.md ("Configuration"), each with its
    default; every one is validated here.
    """

    def __init__(
        self,
        api_key: str,
        grouping_function: GroupingFunction | str | None,
        base_log_url: str | None = None,
        buffer_length: int = 1,
        development_mode: bool = False,
        background_worker_mode: bool = True,
        allowlist: Iterable[str] | None = None,
        denylist: Iterable[str] | None = None,
        blacklist: Iterable[str] | None = None,
        whitelist: Iterable[str] | None = None,
        allowed_http_hosts: Iterable[str] | None = None,
        timeout: float = 3,
        *,
        metrics_server: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        flush_interval: float = 1.0,
        max_queue_events: int = 10_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_batch_events: int = 500,
        shutdown_timeout: float = 5.0,
        log_body: bool = True,
        exclude_paths: Iterable[str] | None = None,
        log_options_requests: bool = False,
        skip: Callable[[Any], bool] | str | None = None,
        mask: Callable[[dict[str, Any]], dict[str, Any]] | str | None = None,
        mask_event: Callable[[dict[str, Any]], dict[str, Any]] | str | None = None,
        send_cookies: bool = False,
        trust_forwarded_headers: bool = False,
        compress: bool = False,
        retry: Retry | None = None,
        documentation_header: bool = True,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key must be a non-empty string (your ReadMe API key)")
        self.api_key = api_key
        self.grouping_function = _resolve_callable(grouping_function, "grouping_function")

        if blacklist is not None:
            warnings.warn("blacklist is deprecated, use denylist", DeprecationWarning, stacklevel=2)
        if whitelist is not None:
            warnings.warn("whitelist is deprecated, use allowlist", DeprecationWarning, stacklevel=2)
        self.denylist = _str_list(denylist if denylist is not None else blacklist, "denylist")
        self.allowlist = _str_list(allowlist if allowlist is not None else whitelist, "allowlist")
        self.allowed_http_hosts = _str_list(allowed_http_hosts, "allowed_http_hosts")
        self.exclude_paths = _str_list(exclude_paths, "exclude_paths")

        if base_log_url is not None and not (
            isinstance(base_log_url, str) and base_log_url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"base_log_url must be an http(s) URL, got {base_log_url!r}")
        self.base_log_url = base_log_url.rstrip("/") if base_log_url else None

        server = os.environ.get(METRICS_SERVER_ENV) or metrics_server or DEFAULT_METRICS_SERVER
        if not server.startswith(("http://", "https://")):
            raise ValueError(f"metrics server must be an http(s) URL, got {server!r}")
        self.metrics_server = server.rstrip("/")

        self.buffer_length: int = _number(buffer_length, "buffer_length", minimum=1, integer=True)
        self.timeout: float = _number(timeout, "timeout", minimum=0.001)
        self.max_body_bytes: int = _number(max_body_bytes, "max_body_bytes", minimum=0, integer=True)
        self.flush_interval: float = _number(flush_interval, "flush_interval", minimum=0.001)
        self.max_queue_events: int = _number(max_queue_events, "max_queue_events", minimum=1, integer=True)
        self.max_queue_bytes: int = _number(max_queue_bytes, "max_queue_bytes", minimum=1, integer=True)
        self.max_batch_events: int = _number(max_batch_events, "max_batch_events", minimum=1, integer=True)
        self.shutdown_timeout: float = _number(shutdown_timeout, "shutdown_timeout", minimum=0)
        if self.max_batch_events < self.buffer_length:
            raise ValueError("max_batch_events must be >= buffer_length")

        self.development_mode = bool(development_mode)
        self.background_worker_mode = bool(background_worker_mode)
        self.log_body = bool(log_body)
        self.log_options_requests = bool(log_options_requests)
        self.send_cookies = bool(send_cookies)
        self.trust_forwarded_headers = bool(trust_forwarded_headers)
        self.compress = bool(compress)
        self.documentation_header = bool(documentation_header)
        self.skip = _resolve_callable(skip, "skip")
        if mask is not None and mask_event is not None:
            raise ValueError("give mask or mask_event, not both (they are the same hook)")
        self.mask = _resolve_callable(mask if mask is not None else mask_event, "mask")
        if retry is not None and not isinstance(retry, Retry):
            raise ValueError(f"retry must be a readme_metrics.retry.Retry or None, not {type(retry).__name__}")
        self.retry: Retry | None = retry

    # Read-only aliases of the existing package's attribute names.
    @property
    def README_API_KEY(self) -> str:  # noqa: N802 - compatibility name
        return self.api_key

    @property
    def BUFFER_LENGTH(self) -> int:  # noqa: N802 - compatibility name
        return self.buffer_length

    @property
    def IS_DEVELOPMENT_MODE(self) -> bool:  # noqa: N802 - compatibility name
        return self.development_mode

    @property
    def IS_BACKGROUND_MODE(self) -> bool:  # noqa: N802 - compatibility name
        return self.background_worker_mode

    @property
    def GROUPING_FUNCTION(self) -> GroupingFunction | None:  # noqa: N802 - compatibility name
        return self.grouping_function

    @property
    def DENYLIST(self) -> list[str]:  # noqa: N802 - compatibility name
        return list(self.denylist)

    @property
    def ALLOWLIST(self) -> list[str]:  # noqa: N802 - compatibility name
        return list(self.allowlist)

    @property
    def ALLOWED_HTTP_HOSTS(self) -> list[str]:  # noqa: N802 - compatibility name
        return list(self.allowed_http_hosts)

    @property
    def METRICS_API(self) -> str:  # noqa: N802 - compatibility name
        return self.metrics_server

    @property
    def METRICS_API_TIMEOUT(self) -> float:  # noqa: N802 - compatibility name
        return self.timeout

    def __repr__(self) -> str:
        # Never print the key itself.
        return f"MetricsApiConfig(api_key='…{self.api_key[-4:]}', metrics_server={self.metrics_server!r})"
