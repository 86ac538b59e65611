"""Route policies: what to log, and how, per route (``docs/routes.md``).

:class:`Route` is a small immutable value, validated when it is made (like
``urllib3``'s ``Retry``). It is used two ways:

- in the configuration, by pattern: ``MetricsApiConfig(..., routes={"/audit/*":
  Route(max_body_bytes=16 * 2**20), "/items/{id}": Route(sample_rate=0.1)})``; a pattern
  is a glob on the path (``*`` also crosses ``/``, as in ``exclude_paths``) or a route
  template (``{name}`` is one path segment, ``{name:path}`` any rest); the first pattern
  that matches, in the mapping's order, applies;
- on a view, as a decorator (``@Route(log=False)``): Flask (with the ``ReadMeMetrics``
  extension), FastAPI / Starlette endpoints, Django views. A view's policy wins over a
  pattern's.

:class:`RouteTable` is the compiled form of ``routes=``, used on the request path: a
path's policy is decided once and cached (a bounded cache: paths are unbounded), so a
request pays a dictionary lookup. :func:`route_template` normalizes the template a
framework matched (``/items/<int:id>``, ``/items/{id:int}``, Django's ``items/<int:id>``
or ``^items/(?P<id>[0-9]+)/$``) to ``/items/{id}``: the ``_route`` field of a log.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["VIEW_ATTRIBUTE", "Route", "RouteTable", "check_rate", "check_routes", "route_template", "view_route"]

#: The attribute a view decorated with ``@Route(...)`` carries.
VIEW_ATTRIBUTE = "__readme_metrics_route__"
#: Largest ``max_body_bytes`` a route may keep (an audit route's whole bodies).
MAX_ROUTE_BODY = 256 * 1024 * 1024

F = TypeVar("F")


def _keys(value: Iterable[str] | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"Route: {name} must be a list of strings")
    items = tuple(value)
    if not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"Route: {name} must hold non-empty strings")
    return items


class Route:
    """The logging policy of a route. Every argument is optional; ``None`` keeps the
    app-wide setting.

    - ``log``: False never logs the route (it then costs a dictionary lookup).
    - ``log_body``: False logs no bodies for the route; True logs them even when the
      app-wide ``log_body`` is off.
    - ``max_body_bytes``: most bytes of each body kept (up to 256 MiB: an audit route
      keeps whole bodies; the queue's ``max_queue_bytes`` still bounds memory).
    - ``denylist``, ``allowlist``: keys added to the app-wide lists for this route.
    - ``sample_rate``: the share of the route's requests logged (0 to 1; 5xx answers,
      exceptions and slow requests are always logged).

    Immutable and hashable; ``repr`` shows what it sets. Used as a decorator it marks a
    view (see the module docstring) and returns the view itself.
    """

    __slots__ = ("allowlist", "denylist", "log", "log_body", "max_body_bytes", "sample_rate")

    log: bool
    log_body: bool | None
    max_body_bytes: int | None
    denylist: tuple[str, ...]
    allowlist: tuple[str, ...]
    sample_rate: float | None

    def __init__(
        self,
        *,
        log: bool = True,
        log_body: bool | None = None,
        max_body_bytes: int | None = None,
        denylist: Iterable[str] | None = None,
        allowlist: Iterable[str] | None = None,
        sample_rate: float | None = None,
    ) -> None:
        if not isinstance(log, bool):
            raise ValueError(f"Route: log must be True or False, got {log!r}")
        if log_body is not None and not isinstance(log_body, bool):
            raise ValueError(f"Route: log_body must be True, False or None, got {log_body!r}")
        if max_body_bytes is not None and (
            type(max_body_bytes) is not int or not 0 <= max_body_bytes <= MAX_ROUTE_BODY
        ):
            raise ValueError(f"Route: max_body_bytes must be an integer from 0 to {MAX_ROUTE_BODY}")
        if sample_rate is not None:
            check_rate(sample_rate, "Route: sample_rate")
        values = {
            "log": log,
            "log_body": log_body,
            "max_body_bytes": max_body_bytes,
            "denylist": _keys(denylist, "denylist"),
            "allowlist": _keys(allowlist, "allowlist"),
            "sample_rate": None if sample_rate is None else float(sample_rate),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Route is immutable: make a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Route is immutable: make a new one")

    def _items(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Route) and self._items() == other._items()

    def __hash__(self) -> int:
        return hash(self._items())

    def __repr__(self) -> str:
        unset = {"log": True, "denylist": (), "allowlist": ()}
        shown = [
            f"{name}={getattr(self, name)!r}"
            for name in ("log", "log_body", "max_body_bytes", "denylist", "allowlist", "sample_rate")
            if getattr(self, name) != unset.get(name)
        ]
        return f"Route({', '.join(shown)})"

    def __call__(self, view: F) -> F:
        """Mark ``view`` with this policy (a decorator); the view itself is returned."""
        try:
            setattr(view, VIEW_ATTRIBUTE, self)
        except (AttributeError, TypeError) as exc:
            raise TypeError(f"Route: cannot mark {view!r} ({exc}); decorate a function or a class") from exc
        return view

    def merged(self, view: Route | None) -> Route:
        """This policy with a view's policy on top (the view's settings win)."""
        if view is None or view is self:
            return self
        new = Route.__new__(Route)
        for name in self.__slots__:
            mine, theirs = getattr(self, name), getattr(view, name)
            if name in ("denylist", "allowlist"):
                value = mine + tuple(k for k in theirs if k not in mine)
            elif name == "log":
                value = mine and theirs
            else:
                value = theirs if theirs is not None else mine
            object.__setattr__(new, name, value)
        return new


def check_routes(value: Any) -> dict[str, Route]:
    """``routes=`` validated: a mapping of path globs or route templates to :class:`Route`
    (its order kept: the first matching pattern applies)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("routes must be a mapping of patterns ('/audit/*', '/items/{id}') to Route(...)")
    for pattern, policy in value.items():
        if not isinstance(pattern, str) or not pattern.startswith(("/", "*")):
            raise ValueError(f"routes: {pattern!r} is not a path pattern (it starts with '/' or '*')")
        if not isinstance(policy, Route):
            raise ValueError(f"routes[{pattern!r}] must be a readme_metrics.Route, not {type(policy).__name__}")
    return dict(value)


def check_rate(value: Any, name: str = "sample_rate") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


#: The policy of a route that has none: every setting app-wide.
DEFAULT = Route()


def view_route(view: Any) -> Route | None:
    """The policy a view was decorated with, if any (bound methods and
    ``functools.wraps`` wrappers included)."""
    policy = getattr(view, VIEW_ATTRIBUTE, None)
    if policy is None:
        policy = getattr(getattr(view, "__wrapped__", None), VIEW_ATTRIBUTE, None)
    if policy is None:
        policy = getattr(getattr(view, "view_class", None), VIEW_ATTRIBUTE, None)  # Django class-based views
    return policy if isinstance(policy, Route) else None


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")


def pattern_regex(pattern: str) -> str:
    """The regex (for ``fullmatch``) of a ``routes=`` pattern: a template when it holds
    ``{name}`` placeholders (one segment each; ``{name:path}`` any rest), else a glob."""
    if "{" not in pattern:
        return fnmatch.translate(pattern)[4:-3]  # "(?s:" ... ")\Z"
    out, end = [], 0
    for match in _PLACEHOLDER.finditer(pattern):
        out.append(re.escape(pattern[end : match.start()]))
        out.append(".*" if match.group(2) == "path" else "[^/]+")
        end = match.end()
    out.append(re.escape(pattern[end:]))
    return "".join(out)


class RouteTable:
    """``routes=`` compiled: :meth:`for_path` gives the policy of a path (None: none
    applies), decided once per path and cached; at most ``cache_size`` paths are kept (the
    cache starts afresh when full, so an app with unbounded paths pays one regex match
    per new path, never unbounded memory)."""

    __slots__ = ("_cache", "_policies", "_regex", "cache_size")

    def __init__(self, routes: Mapping[str, Route], cache_size: int = 2048) -> None:
        self._policies = tuple(routes.values())
        parts = [f"(?P<r{i}>{pattern_regex(p)})" for i, p in enumerate(routes)]
        self._regex = re.compile("|".join(parts), re.DOTALL) if parts else None
        self._cache: dict[str, Route | None] = {}
        self.cache_size = cache_size

    def __bool__(self) -> bool:
        return self._regex is not None

    def for_path(self, path: str) -> Route | None:
        try:
            return self._cache[path]
        except KeyError:
            pass
        policy = None
        match = self._regex.fullmatch(path) if self._regex is not None else None
        if match is not None and match.lastgroup is not None:
            policy = self._policies[int(match.lastgroup[1:])]
        cache = self._cache
        if len(cache) >= self.cache_size:
            cache.clear()
        cache[path] = policy
        return policy


_ANGLE = re.compile(r"<(?:[^<>:]+:)?([A-Za-z_][A-Za-z0-9_]*)>")
_BRACES = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^{}]*)?\}")


@functools.lru_cache(maxsize=1024)
def route_template(raw: str) -> str:
    """A framework's route template as ``/a/{name}``: werkzeug's and Django's
    ``<conv:name>``, Starlette's ``{name:conv}``, Django regex routes' named groups
    ``(?P<name>...)`` (anchors and escapes dropped). A leading ``/`` is added."""
    text = raw
    if "(?P<" in text or text.startswith("^") or text.endswith("$"):
        text = _regex_route(text)
    if "<" in text:
        text = _ANGLE.sub(r"{\1}", text)
    if "{" in text:
        text = _BRACES.sub(r"{\1}", text)
    return text if text.startswith("/") else "/" + text


def _regex_route(regex: str) -> str:
    """Django's ``re_path`` route (possibly several joined by ``include``) as a template."""
    out: list[str] = []
    i, n = 0, len(regex)
    while i < n:
        char = regex[i]
        if char == "(":
            depth, j = 1, i + 1
            while j < n and depth:
                if regex[j] == "\\":
                    j += 1
                elif regex[j] == "(":
                    depth += 1
                elif regex[j] == ")":
                    depth -= 1
                j += 1
            group = regex[i:j]
            named = re.match(r"\(\?P<([A-Za-z_][A-Za-z0-9_]*)>", group)
            if named:
                out.append("{" + named.group(1) + "}")
            elif not group.startswith("(?"):
                out.append("{}")
            i = j
            continue
        if char == "\\" and i + 1 < n:
            if regex[i + 1] not in "AZz":
                out.append(regex[i + 1])
            i += 2
            continue
        if char not in "^$?":
            out.append(char)
        i += 1
    return "".join(out)
