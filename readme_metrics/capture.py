"""The capture: what the request path records about one HTTP exchange.

Both middlewares (WSGI and ASGI) translate their protocol into a :class:`Capture`; nothing
else about the protocol reaches the rest of the SDK. A capture is cheap to fill: raw
strings, headers as the protocol gives them (ASGI's byte pairs are not even decoded), a
bounded copy of each body, and timestamps. Decoding, parsing, HAR building and redaction
happen later, on the worker (see :mod:`readme_metrics.build.har`). Every field but ``group``
and the two body copies is plain data, so a capture can be handed to another process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from time import monotonic as _monotonic
from time import time as _time
from typing import Any

#: Group of an exchange whose grouping function failed: logged, but attributed to nobody.
ANONYMOUS_GROUP = {"id": "anonymous", "label": "anonymous"}


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def header_pairs(headers: Sequence[Sequence[Any]]) -> list[tuple[str, str]]:
    """A capture's header list as ``(str, str)`` pairs, order and repeats kept.

    The request path keeps headers as the protocol gave them (see :class:`Capture`):
    ``(str, str)`` pairs are taken as they are, ASGI's ``(bytes, bytes)`` pairs are decoded
    as latin-1 (what HTTP allows), and anything else an app put in a header list is made
    text rather than refused.
    """
    if not headers:
        return []
    if isinstance(headers[0][0], str):
        return [
            (name, value) if type(name) is str and type(value) is str else (_text(name), _text(value))
            for name, value in headers
        ]
    try:
        return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
    except (AttributeError, TypeError, ValueError):  # a mix: one by one
        return [(_text(item[0]), _text(item[1])) for item in headers]


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


#: Random UUIDs made ahead, formatted, in one ``os.urandom`` call per refill (see
#: :func:`new_log_id`). Emptied in a forked child, which must not reuse its parent's.
_ids: list[str] = []
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_IDS_PER_REFILL = 64


def _refill_ids() -> None:
    raw = os.urandom(16 * _IDS_PER_REFILL).hex()
    _ids.extend(
        [
            f"{raw[i : i + 8]}-{raw[i + 8 : i + 12]}-4{raw[i + 13 : i + 16]}-{_VARIANT[raw[i + 16]]}"
            f"{raw[i + 17 : i + 20]}-{raw[i + 20 : i + 32]}"
            for i in range(0, 32 * _IDS_PER_REFILL, 32)
        ]
    )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.clear)


def new_log_id() -> str:
    """A random (version 4) UUID as text: the ``_id`` of a log.

    Each is made of its own 122 random bits from ``os.urandom`` (unpredictable: the id is
    shown to API callers in ``x-documentation-url``); they are made 64 at a time, which
    costs a fifth of ``uuid.uuid4()`` per id. ``list.pop`` is atomic, so threads never
    share one; a forked child starts with none of its parent's.
    """
    try:
        return _ids.pop()
    except IndexError:
        _refill_ids()
        return _ids.pop()


class BodyCopy:
    """A copy of at most ``limit`` bytes of a body, plus the body's true size.

    The first chunk is kept as ``bytes``: by reference when it is ``bytes`` (they never
    change, so that is a copy without the copying), else copied (a ``bytearray`` or a
    ``memoryview`` may be reused by its owner); from the second chunk on, the kept bytes
    are a ``bytearray``. Never more than ``limit`` bytes are kept.
    """

    __slots__ = ("_buf", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        # bytes (empty, or the first chunk itself) or a bytearray while the exchange
        # runs; bytes once read (see ``data``).
        self._buf: bytearray | bytes = b""

    def add(self, chunk: bytes | bytearray | memoryview) -> None:
        n = len(chunk)
        if not n:
            return
        buf = self._buf
        room = self.limit - len(buf)
        if room > 0:
            if not buf:  # the first chunk: kept as bytes (by reference when it is bytes)
                if n > room:
                    chunk = chunk[:room]
                self._buf = chunk if type(chunk) is bytes else bytes(chunk)
            else:
                if type(buf) is bytes:
                    buf = self._buf = bytearray(buf)
                buf += chunk if n <= room else chunk[:room]
        self.size += n

    @property
    def data(self) -> bytes:
        """The kept bytes. The copy turns immutable on first read, so reading it again
        makes no further copy (the worker reads it once the exchange is over)."""
        buf = self._buf
        if type(buf) is not bytes:
            buf = self._buf = bytes(buf)
        return buf

    def seal(self) -> bytes | bytearray:
        """The kept bytes, handed over without a copy, for writing them out once the
        exchange is over. From then on the copy keeps nothing (a late ``add``, say from
        an app that reads its request body after the response, only counts ``size``), so
        the bytes handed over never change."""
        buf = self._buf
        self._buf = b""
        self.limit = 0
        return buf

    @property
    def kept(self) -> int:
        return len(self._buf)

    @property
    def truncated(self) -> bool:
        return self.size > len(self._buf)


class Extras:
    """What route policies, sampling and the response-aware hooks add to a capture
    (``docs/routes.md``; filled by :mod:`readme_metrics._policy`, read by
    :mod:`readme_metrics.build.extras`).

    ``policy``: the :class:`~readme_metrics.routes.Route` in force (None: app-wide
    settings); ``draw``: this request's sampling draw in [0, 1); ``sampled``: kept by
    sampling (else logged only as a 5xx, an exception or a slow request, without bodies);
    ``bodies``: bodies are copied for the log; ``dropped``: not to be logged after all (a
    view's ``log=False``, a response-aware ``skip``); ``route``: the template the framework
    matched, as it wrote it; ``weight``: 1 / the sample rate that kept the log;
    ``metadata``: what the metadata hook returned; ``exception``: what the app raised;
    ``gone``: the client went away (a disconnect is not the app raising, for sampling);
    ``link``: the :class:`readme_metrics._links.Link` holding the outgoing calls made
    while the request was served, until its fate is known (then None).
    """

    __slots__ = (
        "bodies",
        "draw",
        "dropped",
        "exception",
        "gone",
        "link",
        "metadata",
        "policy",
        "route",
        "sampled",
        "weight",
    )

    def __init__(self, policy: Any, draw: float) -> None:
        self.policy = policy
        self.draw = draw
        self.sampled = True
        self.bodies = True
        self.dropped = False
        self.route: str | None = None
        self.weight = 1.0
        self.metadata: Any = None
        self.exception: BaseException | None = None
        self.gone = False
        self.link: Any = None


class Capture:
    """One exchange as the request path saw it.

    Header lists keep order and repeats, as the protocol gave them: ``(str, str)`` pairs
    (WSGI, Django: HTTP names derived from the CGI names; apps' response headers as given)
    or, from ASGI, the ``(bytes, bytes)`` pairs of the scope and of
    ``http.response.start`` as they are (lower-case names); the builder decodes them
    (:func:`header_pairs`). Times: ``started_at`` is the wall clock (for
    ``startedDateTime``); durations come from the ``*_mono`` monotonic stamps.

    Every field holds plain data (str, bytes, numbers, bools, None, lists and tuples of
    them), except ``group`` (the grouping function's result), the two
    :class:`BodyCopy` and ``extras`` (:class:`Extras`: it may hold the app's exception and
    what the metadata hook returned). A ``__slots__`` class: one is made per logged request.
    """

    __slots__ = (
        "client_address",
        "completed",
        "end_mono",
        "error",
        "extras",
        "group",
        "host",
        "http_version",
        "log_id",
        "method",
        "path",
        "query",
        "reason",
        "request_body",
        "request_headers",
        "response_body",
        "response_headers",
        "response_start_mono",
        "scheme",
        "start_mono",
        "started_at",
        "status",
    )

    method: str
    scheme: str
    host: str
    path: str
    query: str
    http_version: str
    client_address: str | None
    request_headers: Sequence[Sequence[Any]]
    request_body: BodyCopy
    response_body: BodyCopy
    group: Any
    started_at: float
    start_mono: float
    status: int
    reason: str | None
    response_headers: Sequence[Sequence[Any]]
    response_start_mono: float | None
    end_mono: float | None
    completed: bool
    error: str | None
    log_id: str | None
    extras: Extras | None

    def __init__(
        self,
        method: str,
        scheme: str,
        host: str,
        path: str,
        query: str,
        http_version: str,
        client_address: str | None,
        request_headers: Sequence[Sequence[Any]],
        request_body: BodyCopy,
        response_body: BodyCopy,
        group: Any = None,
        started_at: float | None = None,
        start_mono: float | None = None,
        status: int = 0,
        reason: str | None = None,
        response_headers: Sequence[Sequence[Any]] | None = None,
        response_start_mono: float | None = None,
        end_mono: float | None = None,
        completed: bool = False,
        error: str | None = None,
        log_id: str | None = None,
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.query = query
        self.http_version = http_version
        self.client_address = client_address
        self.request_headers = request_headers
        self.request_body = request_body
        self.response_body = response_body
        self.group = group
        self.started_at = _time() if started_at is None else started_at
        self.start_mono = _monotonic() if start_mono is None else start_mono
        self.status = status
        self.reason = reason
        self.response_headers = [] if response_headers is None else response_headers
        self.response_start_mono = response_start_mono
        self.end_mono = end_mono
        self.completed = completed
        self.error = error
        self.log_id = log_id
        self.extras: Extras | None = None

    def __repr__(self) -> str:
        return f"Capture({self.method} {self.scheme}://{self.host}{self.path} -> {self.status})"

    def response_started(self, status: int, headers: Sequence[Sequence[Any]], reason: str | None = None) -> None:
        self.status = status
        self.reason = reason
        self.response_headers = headers
        if self.response_start_mono is None:
            self.response_start_mono = _monotonic()

    def finish(self, completed: bool, error: BaseException | None = None, *, server_500: bool = False) -> None:
        """Close the capture: the exchange ended, normally or not.

        ``server_500``: the app failed before any response reached the client, so the
        server answers with its own 500; that is what the log records.
        """
        self.end_mono = end = _monotonic()
        self.completed = completed
        if error is not None:
            try:
                text = str(error)
            except Exception:  # an exception whose __str__ fails must not replace the app's
                text = "<unprintable>"
            self.error = f"{type(error).__name__}: {text}"[:500]
            if self.extras is not None and isinstance(error, Exception):
                self.extras.exception = error  # its traceback is formatted on the worker
        if server_500:
            self.status, self.reason, self.response_headers = 500, None, []
        if self.response_start_mono is None:
            self.response_start_mono = end

    @property
    def approx_bytes(self) -> int:
        """What the capture holds in memory, roughly (for the queue's byte bound)."""
        return 1024 + self.request_body.kept + self.response_body.kept


# -- outgoing calls (issue 17; readme_metrics.outgoing) ---------------------------------


#: Group of an outgoing call made outside any logged request (a script, a task worker).
OUTGOING_GROUP = {"id": "outgoing", "label": "outgoing"}


class OutgoingCapture(Capture):
    """A call the app made (``requests``, ``httpx``): the same record as an incoming
    exchange, plus ``parent`` (the ``_id`` of the incoming request's log during which it
    was made, or None) and ``decoded`` (the response body copy holds the bytes after the
    library undid its ``Content-Encoding``, so the builder must not decode them again).
    Logged with ``_direction: "outgoing"``."""

    __slots__ = ("decoded", "parent")

    parent: str | None
    decoded: bool


class OutgoingLog(bytes):
    """The encoded log of an outgoing call: bytes, marked, so that a destination that does
    not take outgoing logs (the hosted ReadMe API) never gets one (see
    :class:`readme_metrics.delivery.sender.Sender`)."""

    __slots__ = ()
