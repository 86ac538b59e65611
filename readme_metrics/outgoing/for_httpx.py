"""``httpx``: its seams, ``HTTPTransport.handle_request`` and
``AsyncHTTPTransport.handle_async_request`` (the default transports of ``Client`` and
``AsyncClient``; a transport of your own, such as ``MockTransport``, is not recorded).

The transport's response body stream is wrapped: the copy grows as the app reads it
(bounded), holding the bytes as they came over the wire (before ``httpx`` decodes them);
a body never read is never read for the log.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

from readme_metrics.outgoing.calls import Call, begin
from readme_metrics.outgoing.patches import Patches

_patches = Patches()  # both transports' methods while instrumented


def patch() -> bool:
    """Wrap both transports; False when ``httpx`` is not installed."""
    if _patches:
        return True
    try:
        import httpx
    except ImportError:
        return False

    class SyncTap(httpx.SyncByteStream):
        def __init__(self, stream: Any, call: Call) -> None:
            self.stream, self.call = stream, call

        def __iter__(self) -> Iterator[bytes]:
            call = self.call
            try:
                for chunk in self.stream:
                    call.add(chunk)
                    yield chunk
            except GeneratorExit:
                call.end(False)
                raise
            except BaseException as exc:
                call.end(False, exc)
                raise
            call.end(True)

        def close(self) -> None:
            try:
                self.stream.close()
            finally:
                self.call.end(False)

    class AsyncTap(httpx.AsyncByteStream):
        def __init__(self, stream: Any, call: Call) -> None:
            self.stream, self.call = stream, call

        async def __aiter__(self) -> AsyncIterator[bytes]:
            call = self.call
            try:
                async for chunk in self.stream:
                    call.add(chunk)
                    yield chunk
            except GeneratorExit:
                call.end(False)
                raise
            except BaseException as exc:
                call.end(False, exc)
                raise
            call.end(True)

        async def aclose(self) -> None:
            try:
                await self.stream.aclose()
            finally:
                self.call.end(False)

    sync_original = httpx.HTTPTransport.handle_request
    async_original = httpx.AsyncHTTPTransport.handle_async_request

    @functools.wraps(sync_original)
    def handle_request(self: Any, request: Any) -> Any:
        call = _begin(request)
        if call is None:
            return sync_original(self, request)
        try:
            response = sync_original(self, request)
        except BaseException as exc:
            call.end(False, exc)
            raise
        return _follow(call, response, SyncTap)

    @functools.wraps(async_original)
    async def handle_async_request(self: Any, request: Any) -> Any:
        call = _begin(request)
        if call is None:
            return await async_original(self, request)
        try:
            response = await async_original(self, request)
        except BaseException as exc:
            call.end(False, exc)
            raise
        return _follow(call, response, AsyncTap)

    _patches.put(httpx.HTTPTransport, "handle_request", sync_original, handle_request)
    _patches.put(httpx.AsyncHTTPTransport, "handle_async_request", async_original, handle_async_request)
    return True


def unpatch() -> None:
    """Put ``httpx``'s own methods back (unless someone wrapped ours since)."""
    _patches.restore()


def _begin(request: Any) -> Call | None:
    try:
        body: Any = request.content  # bytes content is read already
    except Exception:  # a streamed upload (httpx.RequestNotRead): its size only
        body = None
    call = begin(request, request.method, str(request.url), request.headers.raw, body)
    if call is not None and body is None:
        length = request.headers.get("content-length")
        if length and length.isdigit():
            call.capture.request_body.size = int(length)
    return call


def _follow(call: Call, response: Any, tap: Any) -> Any:
    """Record the answer; wrap its body stream. Never raises."""
    try:
        extensions = response.extensions
        reason = extensions.get("reason_phrase", b"")
        version = extensions.get("http_version", b"HTTP/1.1")
        call.response(
            response.status_code,
            reason.decode("latin-1") if isinstance(reason, bytes) else None,
            list(response.headers.raw),
            version.decode("latin-1") if isinstance(version, bytes) else "HTTP/1.1",
        )
        wrapped = tap(response.stream, call)
        response.stream = wrapped
        call.watch(wrapped)
    except Exception:
        call.end(False)
    return response
