"""Route policies without a server: ``Route`` validation, pattern matching (properties:
agreement with Starlette's own route regexes and with ``fnmatch``), template normalization
across frameworks, the bounded caches, hook arity, and the ``_exception`` field's bounds
and redaction. (Under real servers: ``tests/test_routes.py``.)"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import compile_path

from readme_metrics import MetricsApiConfig, Route
from readme_metrics._hooks import Hooks, takes_response
from readme_metrics.asgi import AsgiMetricsMiddleware
from readme_metrics.build.extras import MAX_FRAMES, OMITTED_MESSAGE, exception_field, message_text
from readme_metrics.build.redaction import Redactor
from readme_metrics.delivery import client_for
from readme_metrics.exporters import MemoryExporter
from readme_metrics.routes import RouteTable, route_template, view_route
from readme_metrics.wsgi import WsgiMetricsMiddleware

NAME = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
LITERAL = st.from_regex(r"[a-z0-9.\-]{1,6}", fullmatch=True)
VALUE = st.from_regex(r"[A-Za-z0-9.\-]{1,8}", fullmatch=True)
SEGMENTS = st.lists(st.one_of(LITERAL, NAME.map(lambda n: "{" + n + "}")), min_size=1, max_size=5)


def _template(segments: list[str]) -> str:
    # Starlette refuses a placeholder name twice: number them.
    out, seen = [], 0
    for seg in segments:
        if seg.startswith("{"):
            seen += 1
            seg = "{" + seg[1:-1] + str(seen) + "}"
        out.append(seg)
    return "/" + "/".join(out)


@given(SEGMENTS, st.lists(st.one_of(LITERAL, VALUE), min_size=1, max_size=5))
def test_templates_match_as_starlette_matches(segments: list[str], parts: list[str]) -> None:
    template = _template(segments)
    path = "/" + "/".join(parts)
    regex, _, _ = compile_path(template)
    assert (RouteTable({template: Route()}).for_path(path) is not None) == bool(regex.match(path))


@given(SEGMENTS, st.data())
def test_a_template_matches_the_paths_it_describes(segments: list[str], data: st.DataObject) -> None:
    template = _template(segments)
    path = re.sub(r"\{[^}]+\}", lambda _: data.draw(VALUE), template)
    policy = Route(sample_rate=0.5)
    assert RouteTable({template: policy}).for_path(path) is policy


@given(st.from_regex(r"/[a-z*/]{0,8}", fullmatch=True), st.from_regex(r"/[a-z/]{0,10}", fullmatch=True))
def test_globs_match_as_fnmatch(pattern: str, path: str) -> None:
    assert (RouteTable({pattern: Route()}).for_path(path) is not None) == fnmatch.fnmatchcase(path, pattern)


def test_first_matching_pattern_wins_in_mapping_order() -> None:
    audit, items, rest = Route(max_body_bytes=1 << 24), Route(sample_rate=0.1), Route(log=False)
    table = RouteTable({"/audit/*": audit, "/items/{id}": items, "*": rest})
    assert table.for_path("/audit/items/3") is audit
    assert table.for_path("/items/3") is items
    assert table.for_path("/items/3/parts") is rest
    reordered = RouteTable({"*": rest, "/audit/*": audit})
    assert reordered.for_path("/audit/x") is rest
    assert RouteTable({"/files/{p:path}": items}).for_path("/files/a/b/c") is items


def test_the_path_cache_is_bounded() -> None:
    table = RouteTable({"/items/{id}": Route(sample_rate=0.5)}, cache_size=64)
    for i in range(1000):
        assert table.for_path(f"/items/{i}") is not None
        assert len(table._cache) <= 64


@given(NAME, LITERAL, st.sampled_from(["int", "string", "path", "uuid", "float"]))
def test_templates_of_every_framework_read_the_same(name: str, prefix: str, converter: str) -> None:
    expected = f"/{prefix}/{{{name}}}"
    starlette = {"string": "str"}.get(converter, converter)
    assert route_template(f"/{prefix}/<{name}>") == expected  # Flask, no converter
    assert route_template(f"/{prefix}/<{converter}:{name}>") == expected  # Flask, Django path()
    assert route_template(f"{prefix}/<{converter}:{name}>") == expected  # Django: no leading /
    assert route_template(f"/{prefix}/{{{name}:{starlette}}}") == expected  # Starlette
    assert route_template(f"/{prefix}/{{{name}}}") == expected
    assert route_template(f"^{prefix}/(?P<{name}>[0-9]+)$") == expected  # Django re_path
    assert route_template(rf"^{prefix}/(?P<{name}>[^/(]+(?:\.json)?)/?$") == expected


def test_django_regex_routes_joined_by_include() -> None:
    assert route_template(r"^api/^v(?P<version>\d+)/items/(?P<pk>[0-9]+)/$") == "/api/v{version}/items/{pk}/"


def test_route_is_validated_and_immutable() -> None:
    for bad in (
        {"log": 0},
        {"log_body": "yes"},
        {"max_body_bytes": -1},
        {"max_body_bytes": 1 << 40},
        {"max_body_bytes": 1.5},
        {"sample_rate": 1.5},
        {"sample_rate": True},
        {"denylist": "password"},
        {"allowlist": [""]},
    ):
        with pytest.raises(ValueError):
            Route(**bad)  # type: ignore[arg-type]
    route = Route(max_body_bytes=16 * 1024 * 1024, denylist=["card"])
    with pytest.raises(AttributeError):
        route.log = False  # type: ignore[misc]
    assert route == Route(max_body_bytes=16 * 1024 * 1024, denylist=("card",))
    assert hash(route) == hash(Route(max_body_bytes=16 * 1024 * 1024, denylist=["card"]))
    assert repr(route) == "Route(max_body_bytes=16777216, denylist=('card',))"
    merged = route.merged(Route(log_body=False, denylist=["pin", "card"], sample_rate=0.5))
    assert (merged.max_body_bytes, merged.log_body, merged.denylist, merged.sample_rate) == (
        16 * 1024 * 1024,
        False,
        ("card", "pin"),
        0.5,
    )


def test_route_as_a_view_decorator() -> None:
    policy = Route(log=False)

    @policy
    def view() -> str:
        return "x"

    assert view() == "x" and view_route(view) is policy
    assert view_route(lambda: None) is None


def test_config_options_are_validated() -> None:
    config = MetricsApiConfig("key", None, routes={"/a/*": Route()}, sample_rate=0.25, always_log_slower_than_ms=500)
    assert (config.sample_rate, config.always_log_slower_than_ms) == (0.25, 500)
    for bad in (
        {"routes": {"a/*": Route()}},
        {"routes": {"/a": {"log": False}}},
        {"routes": ["/a"]},
        {"sample_rate": -0.1},
        {"always_log_slower_than_ms": -1},
        {"metadata": 3},
    ):
        with pytest.raises(ValueError):
            MetricsApiConfig("key", None, **bad)  # type: ignore[arg-type]
    # 3.4.0's positional arguments keep their places
    old = MetricsApiConfig("key", None, "https://docs.example.test", 10, True, False, ["a"], ["b"])
    assert (old.buffer_length, old.allowlist, old.denylist, old.routes) == (10, ("a",), ("b",), {})


def test_hook_arity_is_read_once() -> None:
    def one(request: object) -> bool:
        return False

    def two(request: object, response: object) -> bool:
        return False

    def var(*args: object) -> bool:
        return False

    assert not takes_response(one) and takes_response(two) and takes_response(var)
    assert not takes_response(lambda request, *, flag=False: False)
    assert not takes_response(len)  # no signature: the old form
    # a default argument is no second parameter: the one-argument form
    assert not takes_response(lambda request, prefixes=("/health",): request.path.startswith(prefixes))
    assert takes_response(lambda request, response, prefixes=("/health",): False)


def _recurse(n: int) -> None:
    if n == 0:
        raise KeyError("deep")
    _recurse(n - 1)


def test_exception_traceback_keeps_the_innermost_frames() -> None:
    try:
        _recurse(80)
    except KeyError as exc:
        field = exception_field(exc, Redactor())
    assert field["type"] == "KeyError"
    frames = field["traceback"]
    assert len(frames) == MAX_FRAMES
    assert all(f["function"] == "_recurse" and f["file"] == __file__ for f in frames)
    first = _recurse.__code__.co_firstlineno
    assert frames[-1]["line"] == first + 2  # the raise: innermost, last
    assert {f["line"] for f in frames[:-1]} == {first + 3}


@given(st.sampled_from(["password", "Password", "PASSWORD"]), VALUE, st.sampled_from(["=", ": ", ":", " = "]))
def test_denylisted_values_never_stay_in_a_message(key: str, value: str, sep: str) -> None:
    redactor = Redactor(denylist=["password"])
    gone = f"[REDACTED {len(value)}]"
    for template in ("bad {key}{sep}{value} here", 'payload {{"{key}": "{value}"}}', "{{'{key}'{sep}'{value}'}}"):
        text = template.format(key=key, sep=sep, value=value)
        assert message_text(text, redactor) == template.format(key=key, sep=sep, value=gone)


def test_messages_under_an_allowlist_and_without_lists() -> None:
    assert message_text("token=abc", Redactor(allowlist=["id"])) == OMITTED_MESSAGE
    assert message_text("password=abc", Redactor()) == "password=abc"


# -- a client that goes away, odd hook results (in process: the protocols' own callables) --


def _config(**kwargs: Any) -> tuple[MetricsApiConfig, MemoryExporter]:
    exporter = MemoryExporter()
    return MetricsApiConfig("test-api-key", None, exporters=[exporter], flush_interval=0.05, **kwargs), exporter


def _entries(config: MetricsApiConfig, exporter: MemoryExporter) -> list[dict[str, Any]]:
    client_for(config).flush(10)
    return exporter.entries


def _asgi_get(middleware: Any, send_raises: bool = False) -> None:
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b"", "http_version": "1.1"}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if send_raises and message["type"] == "http.response.body":
            raise OSError("the client went away")

    async def run() -> None:
        with contextlib.suppress(OSError):
            await middleware(scope, receive, send)

    asyncio.run(run())


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_client_gone_is_no_exception_for_sampling() -> None:
    config, exporter = _config(sample_rate=0.0)
    _asgi_get(AsgiMetricsMiddleware(_ok_app, config), send_raises=True)  # ASGI: send raises OSError

    def wsgi_app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        yield b"b"

    middleware = WsgiMetricsMiddleware(wsgi_app, config)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "SERVER_NAME": "h", "SERVER_PORT": "80"}
    result = middleware(environ, lambda status, headers, exc_info=None: None)
    chunks = iter(result)
    next(chunks)
    chunks.close()  # WSGI: the server stops iterating (GeneratorExit), then closes
    result.close()  # type: ignore[attr-defined]
    assert _entries(config, exporter) == []  # sampled out, and the app raised nothing
    config, exporter = _config(sample_rate=1.0)  # logged as ever when sampling keeps it
    _asgi_get(AsgiMetricsMiddleware(_ok_app, config), send_raises=True)
    (entry,) = _entries(config, exporter)
    assert entry["_completed"] is False


class _Odd:
    def __bool__(self) -> bool:
        raise ValueError("the truth value is ambiguous")


class _BadMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot be read")

    def __len__(self) -> int:
        return 1


def test_odd_hook_results_never_reach_the_app(caplog: pytest.LogCaptureFixture) -> None:
    config, exporter = _config(skip=lambda request, response: _Odd(), metadata=lambda request, response: _BadMapping())
    _asgi_get(AsgiMetricsMiddleware(_ok_app, config))
    (entry,) = _entries(config, exporter)  # logged, without metadata
    assert "_metadata" not in entry
    assert "the skip hook raised ValueError" in caplog.text and "the metadata hook raised RuntimeError" in caplog.text
    # skip(request) (the form Django's middleware calls after the view): the same guard
    hooks = Hooks(_config(skip=lambda request: _Odd())[0])
    assert hooks.skipped(object()) is False
