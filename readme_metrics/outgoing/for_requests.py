"""``requests``: its one seam, ``HTTPAdapter.send`` (every session's calls go through it).

The response body is recorded as the app reads it: ``requests`` reads through the
``urllib3`` response's ``read`` (``response.content``, ``iter_content``, ``raw.read``,
``stream``), which is wrapped on that one response object (the object itself, its class
and identity, stay). ``Session.send`` without ``stream=True`` reads the whole body at
once, as always; with ``stream=True`` the copy grows as the app reads (bounded), and a
body the app never reads is never read for the log. The copy holds the bytes as the app
gets them (``urllib3`` undoes ``gzip``/``deflate``/``br``), which the log records.
"""

from __future__ import annotations

import functools
from typing import Any

from readme_metrics.outgoing.calls import Call, begin

#: ``(HTTPAdapter, its own send, ours)`` while instrumented.
_saved: tuple[Any, Any, Any] | None = None

_VERSIONS = {9: "HTTP/0.9", 10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2", 30: "HTTP/3"}


def patch() -> bool:
    """Wrap ``HTTPAdapter.send``; False when ``requests`` is not installed."""
    global _saved
    if _saved is not None:
        return True
    try:
        from requests.adapters import HTTPAdapter
    except ImportError:
        return False
    original = HTTPAdapter.send

    @functools.wraps(original)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        call = begin(request, request.method or "GET", request.url or "", list(request.headers.items()), request.body)
        if call is None:
            return original(self, request, *args, **kwargs)
        try:
            response = original(self, request, *args, **kwargs)
        except BaseException as exc:
            call.end(False, exc)
            raise
        _follow(call, response)
        return response

    HTTPAdapter.send = send  # type: ignore[method-assign]
    _saved = (HTTPAdapter, original, send)
    return True


def unpatch() -> None:
    """Put ``requests``' own ``send`` back (unless someone wrapped ours since)."""
    global _saved
    if _saved is None:
        return
    cls, original, ours = _saved
    if cls.__dict__.get("send") is ours:
        cls.send = original
    _saved = None


def _follow(call: Call, response: Any) -> None:
    """Record the answer, and follow its body as the app reads it. Never raises."""
    try:
        raw = response.raw
        headers = getattr(raw, "headers", None)
        pairs = list(headers.items()) if headers is not None else list(response.headers.items())
        version = _VERSIONS.get(getattr(raw, "version", 11), "HTTP/1.1")
        call.response(response.status_code, response.reason, pairs, version)
        if raw is None or not callable(getattr(raw, "read", None)):
            call.end(True)
            return
        if getattr(raw, "closed", False):  # no body at all (HEAD, 204, Content-Length: 0)
            call.end(True)
            return
        _tap(call, raw)
    except Exception:
        call.end(False)


def _tap(call: Call, raw: Any) -> None:
    """Wrap ``read``, ``stream`` and ``close`` of this one ``urllib3`` response. ``stream``
    copies what it yields itself (a chunked body is read without ``read``), and ``read``
    copies only outside it (``stream`` reads through it)."""
    read, stream, close = raw.read, getattr(raw, "stream", None), raw.close
    streaming = [False]

    def note_decoding(decode_content: bool | None) -> None:
        if decode_content or (decode_content is None and getattr(raw, "decode_content", False)):
            call.capture.decoded = True

    def tapped_read(amt: int | None = None, decode_content: bool | None = None, *args: Any, **kwargs: Any) -> Any:
        try:
            data = read(amt, decode_content, *args, **kwargs)
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
            for chunk in stream(amt, decode_content=decode_content):  # type: ignore[misc]
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
            return close()
        finally:
            call.end(False)

    raw.read = tapped_read
    if stream is not None:
        raw.stream = tapped_stream
    raw.close = tapped_close
    call.watch(raw)
