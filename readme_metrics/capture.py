"""The capture: what the request path records about one HTTP exchange.

Both middlewares (WSGI and ASGI) translate their protocol into a :class:`Capture`; nothing
else about the protocol reaches the rest of the SDK. A capture is cheap to fill: raw
strings, a bounded copy of each body, and timestamps. Parsing, HAR building and redaction
happen later, on the worker thread (see :mod:`readme_metrics.har`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any


def path_as_latin1(path: str) -> str:
    """A decoded (Unicode) path in the capture's convention: its UTF-8 bytes as latin-1
    characters, as WSGI's ``PATH_INFO`` carries them (the builder percent-encodes them)."""
    return path if path.isascii() else path.encode("utf-8", "surrogateescape").decode("latin-1")


def host_with_port(name: str, port: str | int | None, scheme: str) -> str:
    """``name[:port]`` as a ``Host`` header says it: the default port of the scheme left
    out, an IPv6 address in brackets."""
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    if port is None or str(port) == "" or str(port) == ("443" if scheme == "https" else "80"):
        return name
    return f"{name}:{port}"


def new_log_id() -> str:
    """A random (version 4) UUID as text: the ``_id`` of a log. Cheaper than ``uuid.uuid4()``."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class BodyCopy:
    """A copy of at most ``limit`` bytes of a body, plus the body's true size."""

    __slots__ = ("_buf", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        # A bytearray while the exchange runs; bytes once read (see ``data``).
        self._buf: bytearray | bytes = bytearray()

    def add(self, chunk: bytes | bytearray | memoryview) -> None:
        n = len(chunk)
        if not n:
            return
        room = self.limit - len(self._buf)
        if room > 0:
            self._buf += chunk if n <= room else chunk[:room]
        self.size += n

    @property
    def data(self) -> bytes:
        """The kept bytes. The copy turns immutable on first read, so reading it again
        makes no further copy (the worker reads it once the exchange is over)."""
        if isinstance(self._buf, bytearray):
            self._buf = bytes(self._buf)
        return self._buf

    @property
    def kept(self) -> int:
        return len(self._buf)

    @property
    def truncated(self) -> bool:
        return self.size > len(self._buf)


@dataclass(eq=False)
class Capture:
    """One exchange as the request path saw it.

    Header names keep the case the protocol gave them (ASGI: lower case; WSGI: derived
    from the CGI names); order and repeats are kept. Times: ``started_at`` is the wall
    clock (for ``startedDateTime``); durations come from the ``*_mono`` monotonic stamps.
    """

    method: str
    scheme: str
    host: str
    path: str
    query: str
    http_version: str
    client_address: str | None
    request_headers: list[tuple[str, str]]
    request_body: BodyCopy
    response_body: BodyCopy
    group: Any = None
    started_at: float = field(default_factory=time.time)
    start_mono: float = field(default_factory=time.monotonic)
    status: int = 0
    reason: str | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_start_mono: float | None = None
    end_mono: float | None = None
    completed: bool = False
    error: str | None = None
    log_id: str | None = None

    def response_started(self, status: int, headers: list[tuple[str, str]], reason: str | None = None) -> None:
        self.status = status
        self.reason = reason
        self.response_headers = headers
        if self.response_start_mono is None:
            self.response_start_mono = time.monotonic()

    def finish(self, completed: bool, error: BaseException | None = None, *, server_500: bool = False) -> None:
        """Close the capture: the exchange ended, normally or not.

        ``server_500``: the app failed before any response reached the client, so the
        server answers with its own 500; that is what the log records.
        """
        self.end_mono = time.monotonic()
        self.completed = completed
        if error is not None:
            try:
                text = str(error)
            except Exception:  # an exception whose __str__ fails must not replace the app's
                text = "<unprintable>"
            self.error = f"{type(error).__name__}: {text}"[:500]
        if server_500:
            self.status, self.reason, self.response_headers = 500, None, []
        if self.response_start_mono is None:
            self.response_start_mono = self.end_mono

    @property
    def approx_bytes(self) -> int:
        """What the capture holds in memory, roughly (for the queue's byte bound)."""
        return 1024 + self.request_body.kept + self.response_body.kept
