"""User hooks on both adapters: sync and async skip hooks, guarded."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from werkzeug.test import Client as WerkzeugClient

from readme_metrics import MetricsApiConfig, MetricsMiddleware
from readme_metrics.testing import MemoryTransport


async def asgi_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def wsgi_hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def group(request: Any) -> dict[str, str]:
    return {"api_key": "hook-key-0000"}


async def skip_private(request: Any) -> bool:
    await asyncio.sleep(0)
    return str(request.url.path).startswith("/private")


async def skip_raises(request: Any) -> bool:
    raise RuntimeError("async skip exploded")


def asgi_get(app: Any, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            return await client.get(path)

    return asyncio.run(go())


def test_async_skip_hook_under_asgi() -> None:
    config = MetricsApiConfig("key", group, skip=skip_private)
    sent = MemoryTransport.attach(config)
    app = MetricsMiddleware(asgi_hello, config)
    for path in ("/private/a", "/public", "/private/b"):
        response = asgi_get(app, path)
        assert response.status_code == 200 and response.content == b"hello"
    assert sent.flush()
    assert [e["request"]["url"] for e in sent.entries] == ["http://testserver/public"]


def test_async_skip_hook_that_raises_logs_the_request(caplog: pytest.LogCaptureFixture) -> None:
    config = MetricsApiConfig("key", group, skip=skip_raises)
    sent = MemoryTransport.attach(config)
    response = asgi_get(MetricsMiddleware(asgi_hello, config), "/x")
    assert response.content == b"hello"
    assert sent.flush() and len(sent.entries) == 1
    assert "async skip exploded" in caplog.text


def test_async_skip_hook_under_wsgi_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = MetricsApiConfig("key", group, skip=skip_private)
    sent = MemoryTransport.attach(config)
    with WerkzeugClient(MetricsMiddleware(wsgi_hello, config)).get("/private/a") as response:
        assert response.data == b"hello"
    assert sent.flush() and len(sent.entries) == 1
    assert "cannot run under WSGI" in caplog.text
