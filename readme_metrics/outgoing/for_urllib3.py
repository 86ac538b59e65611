"""Bare ``urllib3`` (``PoolManager``, ``HTTPConnectionPool``): its seam is
``HTTPConnectionPool.urlopen``; and the body of a ``urllib3`` response, followed as the app
reads it (:func:`follow_body`, shared with the ``requests`` instrumentation, whose calls
``urllib3`` carries: those are left to it, never logged twice).

One log per ``urlopen``: the retries and redirects a pool follows inside one ``urlopen`` are
part of that call (the log has the first URL and the last answer); ``PoolManager`` follows
redirects with one ``urlopen`` per hop, each logged. With ``preload_content=True`` (the
default) ``urllib3`` reads the whole body before returning, and the log copies it from
there; with ``preload_content=False`` the copy grows as the app reads.
"""

from __future__ import annotations

import functools
import weakref
from types import SimpleNamespace
from typing import Any

from readme_metrics.capture import host_with_port
from readme_metrics.outgoing.calls import IN_CALL, Call, begin
from readme_metrics.outgoing.patches import Patches

_patches = Patches()  # HTTPConnectionPool.urlopen while instrumented

VERSIONS = {9: "HTTP/0.9", 10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2", 30: "HTTP/3"}


def patch() -> bool:
    """Wrap ``HTTPConnectionPool.urlopen``; False when ``urllib3`` is not installed."""
    if _patches:
        return True
    try:
        from urllib3.connectionpool import HTTPConnectionPool
    except ImportError:
        return False
    original = HTTPConnectionPool.urlopen

    @functools.wraps(original)
    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if IN_CALL.get():  # requests' call, or a retry or redirect inside this urlopen
            return original(self, method, url, *args, **kwargs)
        call = _begin(self, method, url, args, kwargs)
        inside = IN_CALL.set(True)
        try:
            response = original(self, method, url, *args, **kwargs)
        except BaseException as exc:
            if call is not None:
                call.end(False, exc)
            raise
        finally:
            IN_CALL.reset(inside)
        if call is not None:
            _follow(call, response, kwargs)
        return response

    _patches.put(HTTPConnectionPool, "urlopen", original, urlopen)
    return True


def unpatch() -> None:
    """Put ``urllib3``'s own ``urlopen`` back (unless someone wrapped ours since)."""
    _patches.restore()


def _begin(pool: Any, method: str, url: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    body = kwargs["body"] if "body" in kwargs else args[0] if args else None
    headers = kwargs["headers"] if "headers" in kwargs else args[1] if len(args) > 1 else None
    if headers is None:
        headers = pool.headers
    if "://" not in url:
        url = f"{pool.scheme}://{host_with_port(pool.host, pool.port, pool.scheme)}{url}"
    pairs = list(headers.items())
    # skip_outgoing gets what requests' and httpx's request objects have: method, url, headers.
    request = SimpleNamespace(method=method, url=url, headers=headers)
    return begin(request, method, url, pairs, body)


def _follow(call: Call, response: Any, kwargs: dict[str, Any]) -> None:
    """Record the answer and its body (read already, or as the app reads it). Never raises."""
    try:
        version = VERSIONS.get(getattr(response, "version", 11), "HTTP/1.1")
        call.response(response.status, response.reason, list(response.headers.items()), version)
        if kwargs.get("preload_content", True):
            data = response.data  # read by urllib3 already
            if data:
                call.capture.decoded = bool(kwargs.get("decode_content", True))
                call.add(data)
            call.end(True)
            return
        follow_body(call, response)
    except Exception:
        call.end(False)


def follow_body(call: Call, raw: Any) -> None:
    """Follow the body of ``raw`` (a ``urllib3`` response not read yet) as the app reads it."""
    if raw is None or not callable(getattr(raw, "read", None)):
        call.end(True)
        return
    if getattr(raw, "closed", False):  # no body at all (HEAD, 204, Content-Length: 0)
        call.end(True)
        return
    tap(call, raw)


def tap(call: Call, raw: Any) -> None:
    """Wrap ``read``, ``stream`` and ``close`` of this one ``urllib3`` response. ``stream``
    copies what it yields itself (a chunked body is read without ``read``), and ``read``
    copies only outside it (``stream`` reads through it).

    The wrappers live on the response and reach it through a weak reference, calling the
    class's own functions: a wrapper holding the bound method (which holds the response)
    would make a reference cycle, and the response (with its socket) would then outlive
    its last reference until a garbage collection pass."""
    read, stream, close = _unbound(raw, "read"), _unbound(raw, "stream"), _unbound(raw, "close")
    ref = weakref.ref(raw)
    streaming = [False]

    def note_decoding(decode_content: bool | None) -> None:
        if decode_content or (decode_content is None and getattr(ref(), "decode_content", False)):
            call.capture.decoded = True

    def tapped_read(amt: int | None = None, decode_content: bool | None = None, *args: Any, **kwargs: Any) -> Any:
        try:
            data = read(ref(), amt, decode_content, *args, **kwargs)
        except BaseException as exc:
            call.end(False, exc)
            raise
        if not streaming[0] and not call.done:
            if data:
                note_decoding(decode_content)
                call.add(data)
            if not data or amt is None:
                call.end(True)
        return data

    def tapped_stream(amt: Any = 2**16, decode_content: bool | None = None) -> Any:
        note_decoding(decode_content)
        streaming[0] = True
        try:
            for chunk in stream(ref(), amt, decode_content=decode_content):
                call.add(chunk)
                yield chunk
        except GeneratorExit:  # the app stopped reading: logged when it closes the response
            raise
        except BaseException as exc:
            call.end(False, exc)
            raise
        finally:
            streaming[0] = False
        call.end(True)

    def tapped_close() -> Any:
        try:
            return close(ref())
        finally:
            call.end(False)

    raw.read = tapped_read
    if stream is not None:
        raw.stream = tapped_stream
    raw.close = tapped_close
    call.watch(raw)


def _unbound(raw: Any, name: str) -> Any:
    """``raw``'s method ``name`` as a function taking the response first, keeping no
    reference to ``raw``: the class's function; one set on the instance already (someone
    else's wrapper) is called as it is. None when there is no such method."""
    own = getattr(raw, "__dict__", {}).get(name)
    if own is not None:
        return lambda _raw, *args, **kwargs: own(*args, **kwargs)
    return getattr(type(raw), name, None)
