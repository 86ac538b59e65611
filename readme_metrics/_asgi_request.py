"""The request object the ASGI middleware gives to the grouping function and the skip hook.

When Starlette is installed (FastAPI, Starlette apps) it is a ``starlette.requests.Request``
built over the scope alone: headers, URL, client, query parameters and the scope are
there, and reading the body raises instead of consuming it (the app still owns the body).

Without Starlette it is :class:`AsgiRequest`, a small read-only object with the same
attribute names and the same shapes for the common uses::

    request.method                   "POST"
    request.headers.get("x-api-key") case-insensitive; .getlist(), .items(), ``in``
    request.url                      "http://host/path?q=1" (a str); .url.path, .url.query
    request.client                   (host, port) with .host and .port, or None
    request.query_params.get("q")    first value; .getlist(), .items(), ``in``
    request.scope                    the raw ASGI scope
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from functools import cached_property
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]


class Address(NamedTuple):
    host: str
    port: int | None


class _MultiMap:
    """Read-only multi-valued mapping: ``get`` gives the first value, ``getlist`` all."""

    __slots__ = ("_items", "_lower")

    def __init__(self, items: list[tuple[str, str]], *, case_insensitive: bool) -> None:
        self._items = items
        self._lower = case_insensitive

    def _key(self, name: str) -> str:
        return name.lower() if self._lower else name

    def getlist(self, name: str) -> list[str]:
        key = self._key(name)
        return [v for k, v in self._items if self._key(k) == key]

    def get(self, name: str, default: Any = None) -> Any:
        values = self.getlist(name)
        return values[0] if values else default

    def __getitem__(self, name: str) -> str:
        values = self.getlist(name)
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.getlist(name))

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._items))

    def __len__(self) -> int:
        return len(dict.fromkeys(k for k, _ in self._items))

    def keys(self) -> list[str]:
        return list(self)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class URL(str):
    """The request URL as a string, with ``scheme``, ``netloc``, ``path`` and ``query``."""

    scheme: str
    netloc: str
    path: str
    query: str

    def __new__(cls, scheme: str, netloc: str, path: str, query: str) -> URL:
        url = super().__new__(cls, f"{scheme}://{netloc}{path}" + (f"?{query}" if query else ""))
        url.scheme, url.netloc, url.path, url.query = scheme, netloc, path, query
        return url

    @property
    def hostname(self) -> str:
        host = self.netloc
        if host.startswith("["):
            return host[1 : host.find("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def port(self) -> int | None:
        tail = self.netloc.rsplit("]", 1)[-1]
        if ":" not in tail:
            return None
        try:
            return int(tail.rsplit(":", 1)[1])
        except ValueError:
            return None


class AsgiRequest:
    """A Starlette-shaped view of an ASGI scope (see the module docstring). No body.

    Made for every logged request when a hook is configured, so it does nothing up front:
    headers, URL and query parameters are decoded on first use (most hooks read one
    header), then kept.
    """

    def __init__(self, scope: Scope, host: str, path: str) -> None:
        self.scope = scope
        self.method: str = scope.get("method", "GET")
        self._host = host
        self._path = path

    @cached_property
    def headers(self) -> _MultiMap:
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.scope.get("headers", ())]
        return _MultiMap(raw, case_insensitive=True)

    @cached_property
    def url(self) -> URL:
        query = self.scope.get("query_string", b"").decode("latin-1")
        return URL(self.scope.get("scheme", "http"), self._host, self._path, query)

    @cached_property
    def query_params(self) -> _MultiMap:
        return _MultiMap(parse_qsl(self.url.query, keep_blank_values=True), case_insensitive=False)

    @cached_property
    def client(self) -> Address | None:
        client = self.scope.get("client")
        return Address(client[0], client[1]) if client else None

    @property
    def path_params(self) -> dict[str, Any]:
        return dict(self.scope.get("path_params", {}))

    def __repr__(self) -> str:
        return f"AsgiRequest({self.method} {str(self.url)!r})"


_starlette_request: Any = None


def make_request(scope: Scope, host: str, path: str) -> Any:
    """A ``starlette.requests.Request`` over ``scope`` (no receive), else :class:`AsgiRequest`."""
    global _starlette_request
    if _starlette_request is None:
        try:
            from starlette.requests import Request
        except ImportError:
            _starlette_request = False
        else:
            _starlette_request = Request
    if _starlette_request:
        return _starlette_request(scope)
    return AsgiRequest(scope, host, path)
