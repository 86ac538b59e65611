"""`MetricsApiConfig`: every setting of the SDK, validated once at construction.

The positional and keyword arguments of the existing ``readme-metrics`` package keep their
meaning; everything after ``timeout`` is ours and keyword-only. A setting that cannot work
raises :class:`ValueError` here, never at the first request.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

from readme_metrics._destinations import outgoing_destination_error
from readme_metrics.retry import Retry
from readme_metrics.routes import Route, check_rate, check_routes

DEFAULT_METRICS_SERVER = "https://metrics.readme.io"
#: Default of ``max_body_bytes``: most bytes of each body kept for the log.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
METRICS_SERVER_ENV = "README_METRICS_SERVER"
#: Names the exporters (``readme,jsonl:/var/log/api.jsonl,otlp``); wins over ``exporters=``.
EXPORTERS_ENV = "README_METRICS_EXPORTERS"
#: The exporters ``README_METRICS_EXPORTERS`` may name.
EXPORTER_KINDS = ("readme", "jsonl", "otlp")
#: The hosted ReadMe API, asked for the project's base URL when the metrics server is hosted.
README_API = "https://dash.readme.com/api"

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


def _http_url(value: Any, name: str) -> str:
    """An http(s) URL without its trailing ``/``."""
    if not (isinstance(value, str) and value.startswith(("http://", "https://"))):
        raise ValueError(f"{name} must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def parse_exporters(text: str) -> tuple[tuple[str, str], ...]:
    """``README_METRICS_EXPORTERS``: comma-separated ``kind[:argument]`` items, as
    ``(kind, argument)`` pairs: ``readme[:SERVER]``, ``jsonl:PATH`` (``-``: standard
    output), ``otlp[:ENDPOINT]``. Empty: none named (``()``)."""
    specs: list[tuple[str, str]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        kind, _, argument = item.partition(":")
        kind, argument = kind.strip().lower(), argument.strip()
        if kind not in EXPORTER_KINDS:
            raise ValueError(f"{EXPORTERS_ENV}: unknown exporter {kind!r} (known: {', '.join(EXPORTER_KINDS)})")
        if kind == "jsonl" and not argument:
            raise ValueError(f"{EXPORTERS_ENV}: jsonl needs a path (jsonl:/var/log/api.jsonl, or jsonl:- for stdout)")
        if kind in ("readme", "otlp") and argument:
            _http_url(argument, f"{EXPORTERS_ENV}: {kind}")
        specs.append((kind, argument))
    return tuple(specs)


def _exporters(value: Any) -> tuple[Any, ...] | None:
    """``exporters=``: None (the ReadMe exporter), or a non-empty list of exporters."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError("exporters must be a list of exporters (readme_metrics.exporters)")
    items = tuple(value)
    if not items:
        raise ValueError("exporters must hold at least one exporter (None: the ReadMe API)")
    for item in items:
        if not (callable(getattr(item, "export", None)) and callable(getattr(item, "shutdown", None))):
            raise ValueError(f"exporters: {item!r} is not an exporter (it needs export() and shutdown())")
    if len({id(item) for item in items}) != len(items):
        raise ValueError("exporters: the same exporter is listed twice")
    return items


#: Longest base of ``x-documentation-url`` links accepted (``base_log_url``, or ``GET /v1``).
MAX_BASE_URL = 2048
_PRINTABLE_URL = re.compile(r"https?://[!-~]+\Z")  # printable ASCII: no space, CR, LF or NUL


def clean_base_url(value: Any) -> str | None:
    """``value`` as the base of documentation links (trailing ``/`` dropped), or None when
    it is not an absolute ``http(s)`` URL with a host, of printable ASCII characters only
    (no spaces, no control characters such as CR/LF, nothing beyond ASCII), at most
    :data:`MAX_BASE_URL` characters: what can safely become a response header."""
    if not isinstance(value, str) or len(value) > MAX_BASE_URL or not _PRINTABLE_URL.match(value):
        return None
    try:
        if not urlsplit(value).hostname:
            return None
    except ValueError:  # e.g. an invalid IPv6 literal
        return None
    return value.rstrip("/")


def _base_log_url(value: Any) -> str | None:
    if value is None:
        return None
    base = clean_base_url(value)
    if base is None:
        raise ValueError(
            f"base_log_url must be an absolute http(s) URL of printable ASCII characters (at most {MAX_BASE_URL}; "
            f"an international domain name in its xn-- form), got {value!r}"
        )
    return base


def _metrics_server(value: Any) -> str:
    """The metrics server: ``README_METRICS_SERVER`` wins over ``value``, which wins over
    the hosted API."""
    return _http_url(os.environ.get(METRICS_SERVER_ENV) or value or DEFAULT_METRICS_SERVER, "metrics server")


def _number(value: Any, name: str, *, minimum: float, integer: bool = False) -> Any:
    number = float("nan")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (isinstance(value, int) or not integer):
        number = float(value)
    if not number >= minimum:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} >= {minimum}, got {value!r}")
    return value


class _Compat:
    """One of readme-metrics 3.4.0's upper-case attributes, an alias of ours (``attr``).

    Reading gives our value (through ``read``, e.g. a list where we keep a tuple). Setting
    validates the value as the constructor argument is validated and sets ours, so that it
    takes effect; once a middleware was built with the config (which reads it then), or
    for ``LOGGER``, setting raises :class:`AttributeError` saying what to do instead.
    """

    def __init__(self, attr: str, read: Callable[[Any], Any] | None = None) -> None:
        self.attr = attr
        self.read = read
        self.name = attr

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, config: Any, owner: type | None = None) -> Any:
        if config is None:
            return self
        if self.name == "LOGGER":
            return logging.getLogger("readme_metrics")
        if self.name == "README_API_URL":
            return project_api(config)
        value = getattr(config, self.attr)
        return self.read(value) if self.read is not None else value

    def __set__(self, config: Any, value: Any) -> None:
        config._set_compat(self.name, self.attr, value)


def project_api(config: MetricsApiConfig) -> str:
    """The API whose ``GET /v1`` answers the project's ``baseUrl``: ``README_API_URL`` when
    the app set it, else the ReadMe API for the hosted metrics server, else the metrics
    server itself (the local collector answers it)."""
    if config.readme_api_url:
        return config.readme_api_url
    return README_API if config.metrics_server == DEFAULT_METRICS_SERVER else config.metrics_server


def _api_key(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("api_key must be a non-empty string (your ReadMe API key)")
    return value


#: How each setting an upper-case alias may set is checked (the constructor's rules).
_SETTERS: dict[str, Callable[[Any], Any]] = {
    "api_key": _api_key,
    "grouping_function": lambda v: _resolve_callable(v, "grouping_function"),
    "base_log_url": _base_log_url,
    "buffer_length": lambda v: _number(v, "buffer_length", minimum=1, integer=True),
    "development_mode": bool,
    "background_worker_mode": bool,
    "denylist": lambda v: _str_list(v, "denylist"),
    "allowlist": lambda v: _str_list(v, "allowlist"),
    "allowed_http_hosts": lambda v: _str_list(v, "allowed_http_hosts"),
    "metrics_server": _metrics_server,
    "timeout": lambda v: _number(v, "timeout", minimum=0.001),
    "readme_api_url": lambda v: None if v is None else _http_url(v, "README_API_URL"),
}


class MetricsApiConfig:
    """Settings for the metrics middleware.

    Arguments shared with the existing ``readme-metrics`` package:

    - ``api_key``: the ReadMe API key; sent only as the Basic auth user name.
    - ``grouping_function``: callable (or dotted import path) given the request; returns
      ``{"api_key": ..., "label": ..., "email": ...}`` or ``None`` to not log the request.
      ``None`` instead of a function: every request is logged under the ``anonymous``
      group (a warning says so when a middleware is built with it).
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

    3.4.0's upper-case attributes (``README_API_KEY``, ``BASE_LOG_URL``, ``BUFFER_LENGTH``,
    ``DENYLIST``, ``README_API_URL``, ``LOGGER``, ...) can be read; setting one sets the
    matching setting, validated like the argument, as long as no middleware was built with
    the config yet; otherwise (and for ``LOGGER``) it raises :class:`AttributeError`.
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
        exporters: Iterable[Any] | None = None,
        capture_outgoing: bool = False,
        skip_outgoing: Callable[[Any], bool] | str | None = None,
        outgoing_hosts: Iterable[str] | None = None,
        routes: Mapping[str, Route] | None = None,
        sample_rate: float = 1.0,
        always_log_slower_than_ms: float | None = None,
        metadata: Callable[[Any, Any], Any] | str | None = None,
    ) -> None:
        self.api_key = _api_key(api_key)
        self.grouping_function = _resolve_callable(grouping_function, "grouping_function")

        if blacklist is not None:
            warnings.warn("blacklist is deprecated, use denylist", DeprecationWarning, stacklevel=2)
        if whitelist is not None:
            warnings.warn("whitelist is deprecated, use allowlist", DeprecationWarning, stacklevel=2)
        self.denylist = _str_list(denylist if denylist is not None else blacklist, "denylist")
        self.allowlist = _str_list(allowlist if allowlist is not None else whitelist, "allowlist")
        self.allowed_http_hosts = _str_list(allowed_http_hosts, "allowed_http_hosts")
        self.exclude_paths = _str_list(exclude_paths, "exclude_paths")

        self.base_log_url = _base_log_url(base_log_url)
        self.metrics_server = _metrics_server(metrics_server)
        #: 3.4.0's ``README_API_URL`` when an app set it (see :attr:`README_API_URL`).
        self.readme_api_url: str | None = None

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
        #: Where logs go: ``None`` is the ReadMe exporter of ``api_key``/``metrics_server``.
        self.exporters: tuple[Any, ...] | None = _exporters(exporters)
        #: ``README_METRICS_EXPORTERS`` parsed (it wins over ``exporters``); ``()`` if unset.
        self.exporter_specs: tuple[tuple[str, str], ...] = parse_exporters(os.environ.get(EXPORTERS_ENV, ""))
        # Outgoing calls (readme_metrics.outgoing, docs/outgoing.md).
        self.capture_outgoing = bool(capture_outgoing)
        self.skip_outgoing = _resolve_callable(skip_outgoing, "skip_outgoing")
        self.outgoing_hosts = _str_list(outgoing_hosts, "outgoing_hosts")
        if self.capture_outgoing and (
            problem := outgoing_destination_error(self.exporter_specs, self.exporters, self.metrics_server)
        ):
            raise ValueError(f"capture_outgoing=True: {problem}")
        # Route policies, sampling, the metadata hook (docs/routes.md).
        self.routes: dict[str, Route] = check_routes(routes)
        self.sample_rate: float = check_rate(sample_rate)
        self.always_log_slower_than_ms: float | None = (
            None
            if always_log_slower_than_ms is None
            else _number(always_log_slower_than_ms, "always_log_slower_than_ms", minimum=0)
        )
        self.metadata = _resolve_callable(metadata, "metadata")

    # The attribute names of readme-metrics 3.4.0: each reads our setting, and setting one
    # sets ours, validated as the argument is (see _Compat), until a middleware uses the config.
    README_API_KEY = _Compat("api_key")
    GROUPING_FUNCTION = _Compat("grouping_function")
    BASE_LOG_URL = _Compat("base_log_url")
    BUFFER_LENGTH = _Compat("buffer_length")
    IS_DEVELOPMENT_MODE = _Compat("development_mode")
    IS_BACKGROUND_MODE = _Compat("background_worker_mode")
    DENYLIST = _Compat("denylist", list)
    ALLOWLIST = _Compat("allowlist", list)
    ALLOWED_HTTP_HOSTS = _Compat("allowed_http_hosts", list)
    METRICS_API = _Compat("metrics_server")
    METRICS_API_TIMEOUT = _Compat("timeout")
    README_API_URL = _Compat("readme_api_url")
    LOGGER = _Compat("")

    def _set_compat(self, name: str, attr: str, value: Any) -> None:
        if name == "LOGGER":
            raise AttributeError(
                "MetricsApiConfig.LOGGER cannot be set: the SDK logs through the standard logger "
                "logging.getLogger('readme_metrics'); configure that one (level, handlers, propagate)"
            )
        if self in _in_use:
            argument = "" if attr == "readme_api_url" else f", or pass {attr}= to MetricsApiConfig(...)"
            raise AttributeError(
                f"MetricsApiConfig.{name} cannot change once a middleware uses this config (it was read "
                f"when the middleware was built): set it before building the middleware{argument}"
            )
        new = _SETTERS[attr](value)
        if attr == "buffer_length" and self.max_batch_events < new:
            raise ValueError("max_batch_events must be >= buffer_length")
        setattr(self, attr, new)

    def __repr__(self) -> str:
        # Never print the key itself.
        return f"MetricsApiConfig(api_key='…{self.api_key[-4:]}', metrics_server={self.metrics_server!r})"


#: Configurations a middleware was built with (it read them then): their 3.4.0 attributes
#: can no longer be set. Kept here, not on the user's object.
_in_use: weakref.WeakSet[MetricsApiConfig] = weakref.WeakSet()


def mark_in_use(config: MetricsApiConfig) -> None:
    """Called by a middleware built with ``config``: from now on, setting one of 3.4.0's
    upper-case attributes raises (the middleware would not see the change)."""
    _in_use.add(config)
