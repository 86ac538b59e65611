"""Request-path decisions shared by both middlewares: log this request or not, and who.

Everything here is cheap and guarded: a user hook that raises is logged (rate-limited)
and the request still serves. The filters, in the order they run (before any capture
work; see ``docs/redaction.md``):

- ``OPTIONS`` requests are not logged unless ``log_options_requests=True``.
- ``exclude_paths``: shell-style globs matched against the whole path (``*`` also
  crosses ``/``; case-sensitive): ``["/health", "/static/*"]``.
- ``allowed_http_hosts``: exact hosts, case-insensitive; a host given without a port
  matches any port, one given with a port only that port; ``*.example.com`` matches any
  subdomain (not ``example.com`` itself). The ``Host`` header is what is matched;
  ``X-Forwarded-Host`` (its first value) replaces it only with
  ``trust_forwarded_headers=True``, as anyone can send that header.
- The ``skip`` hook gets the request object; true skips. A hook that raises does not skip.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from readme_metrics._log import warn_limited
from readme_metrics.capture import ANONYMOUS_GROUP, header_pairs

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig


def _host_pattern(hosts: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for exact hosts (with or without port) and ``*.suffix`` wildcards."""
    if not hosts:
        return None
    parts = []
    for host in hosts:
        host = host.lower()
        body = re.escape(host[2:]) if host.startswith("*.") else re.escape(host)
        prefix = r"(?:[^.:]+\.)+" if host.startswith("*.") else ""
        # A host given without a port matches any port.
        port = "" if ":" in host.rsplit("]", 1)[-1] else r"(?::\d+)?"
        parts.append(prefix + body + port)
    return re.compile("(?:" + "|".join(parts) + ")", re.IGNORECASE)


def _without_root_dot(host: str) -> str:
    """``example.com.`` (fully qualified, with the root's dot) is ``example.com``."""
    name, sep, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not sep or not port.isdigit():
        name, sep, port = host, "", ""
    return name.rstrip(".") + sep + port if name.endswith(".") else host


def takes_response(fn: Callable[..., Any]) -> bool:
    """Whether a hook takes ``(request, response)``: two positional parameters or more
    without a default (or ``*args``); ``lambda request, prefixes=PREFIXES: ...`` is the
    one-argument form. Read once, when the configuration's hooks are compiled."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the old form
        return False
    positional = [
        p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


class Hooks:
    """The filters and user hooks of one configuration, compiled once."""

    def __init__(self, config: MetricsApiConfig) -> None:
        self.config = config
        self._hosts = _host_pattern(config.allowed_http_hosts)
        self._paths = (
            re.compile("|".join(fnmatch.translate(p) for p in config.exclude_paths)) if config.exclude_paths else None
        )
        self.needs_request = config.skip is not None or config.grouping_function is not None
        #: Whether :meth:`allows` has anything to check besides ``OPTIONS`` (the adapters
        #: call it only then, or for an ``OPTIONS`` request).
        self.filtering = self._paths is not None or self._hosts is not None
        #: Whether a ``skip(request)`` hook is configured (:meth:`skipped` is False without
        #: one); a ``skip(request, response)`` runs after the response (``_policy``).
        self.has_skip = config.skip is not None and not takes_response(config.skip)

    def allows(self, method: str, host: str, path: str, headers: Sequence[Sequence[Any]]) -> bool:
        """The configured filters, before any capture work. ``headers``: ``(str, str)``
        pairs, or ASGI's ``(bytes, bytes)`` pairs (read only for ``X-Forwarded-Host``)."""
        cfg = self.config
        if method == "OPTIONS" and not cfg.log_options_requests:
            return False
        if self._paths is not None and self._paths.match(path):
            return False
        if self._hosts is not None:
            if cfg.trust_forwarded_headers:
                for name, value in header_pairs(headers):
                    if name.lower() == "x-forwarded-host" and value:
                        host = value.split(",")[0].strip()
                        break
            if not self._hosts.fullmatch(_without_root_dot(host)):
                return False
        return True

    def skipped(self, request: Any, *, allow_async: bool = False) -> Any:
        """The user's ``skip`` hook: True to leave the request out. A hook that raises does
        not skip. An ``async def`` hook gives its awaitable when ``allow_async`` (ASGI: the
        middleware awaits it with :meth:`resolve_skip`); under WSGI it cannot run, so it is
        ignored with a warning."""
        if not self.has_skip or self.config.skip is None:
            return False
        try:
            result = self.config.skip(request)
            if not inspect.isawaitable(result):
                return bool(result)  # inside the guard: a result whose __bool__ raises
            if allow_async:
                return result
            close = getattr(result, "close", None)
            if close is not None:
                close()
        except Exception as exc:
            warn_limited(
                "skip", "readme_metrics: the skip hook raised %s: %s; logging the request", type(exc).__name__, exc
            )
            return False
        warn_limited("skip_async", "readme_metrics: an async skip hook cannot run under WSGI; logging the request")
        return False

    @staticmethod
    async def resolve_skip(result: Any) -> bool:
        """Await an async skip hook's result, guarded like :meth:`skipped`."""
        try:
            return bool(await result)
        except Exception as exc:
            warn_limited(
                "skip", "readme_metrics: the skip hook raised %s: %s; logging the request", type(exc).__name__, exc
            )
            return False

    def group(self, request: Any) -> Any:
        """What the grouping function returned for this request (None: do not log).

        A grouping function that raises gives :data:`ANONYMOUS_GROUP` (the exchange is
        still logged). Checking the shape of the result happens on the worker. An async
        grouping function returns its coroutine; the ASGI middleware awaits it.
        """
        fn: Callable[[Any], Any] | None = self.config.grouping_function
        if fn is None:
            return ANONYMOUS_GROUP
        try:
            return fn(request)
        except Exception as exc:
            warn_limited(
                "group",
                "readme_metrics: the grouping function raised %s: %s; logging as anonymous",
                type(exc).__name__,
                exc,
            )
            return ANONYMOUS_GROUP

    @staticmethod
    async def resolve(group: Any) -> Any:
        """Await an async grouping function's result, guarded like :meth:`group`."""
        if not inspect.isawaitable(group):
            return group
        try:
            return await group
        except Exception as exc:
            warn_limited(
                "group",
                "readme_metrics: the grouping function raised %s: %s; logging as anonymous",
                type(exc).__name__,
                exc,
            )
            return ANONYMOUS_GROUP


#: The host matching of ``allowed_http_hosts``, shared with ``outgoing_hosts`` (readme_metrics.outgoing).
host_pattern = _host_pattern
