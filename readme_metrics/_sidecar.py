"""The delivery process: logs are built, redacted, encoded and posted outside the app.

Building a log (HAR, redaction, JSON) costs 20-50 us of CPU per event. In the app's
process that time is taken from the app: the worker thread holds the same GIL as the
request threads. So by default (``delivery_process=True``) the worker thread only hands
each finished capture, as raw fields and body bytes, through a pipe to a child process
(the same Python running :func:`main` of this very package; see ``_CHILD``), started at
the first event. The child runs the ordinary in-process :class:`~readme_metrics.delivery.Client`
(queue, batches, retries, gzip, shutdown deadline) with the same configuration, and
reports back its counters and its warnings, which the app's process logs through its own
``readme_metrics`` logger. Its reader builds and encodes each log as it arrives
(:meth:`~readme_metrics.delivery.Client.submit_built`), so its work is spread evenly
rather than done in one burst before each post.

Lifetime
    The child reads until the pipe closes: at ``close()`` (interpreter exit, ASGI lifespan
    shutdown) the app's process tells it to close within the remaining deadline and waits
    for its last report. If the app's process dies without closing (SIGKILL, a server
    that re-raises SIGTERM), the pipe closes with it and the child still delivers what it
    holds, within ``shutdown_timeout``. The child ignores SIGINT, SIGTERM and SIGHUP: a
    Ctrl-C or a signal to the process group stops the app, whose exit then ends the
    child in order. A forked worker (gunicorn ``--preload``) starts its own child.

When it is not used
    A custom transport (``readme_metrics.testing.MemoryTransport``), a ``mask`` hook (a
    function cannot cross to another process), ``background_worker_mode=False``, an
    interpreter that is not a plain ``python`` executable (uWSGI, mod_wsgi embed Python:
    their ``sys.executable`` is not one), or a child that cannot start or keeps dying: the
    worker thread then builds and posts in the app's process, as with
    ``delivery_process=False``.

The pipe protocol (private: both ends are this module, same version)
    Frames ``kind (1 byte) | len(meta) | len(a) | len(b)`` (3 x uint32, big-endian), then
    ``meta`` (``marshal``), then two raw byte strings. To the child: ``I`` (the options,
    pickled, in ``a``), ``C`` (one capture: its fields in ``meta``, the request and
    response body copies as ``a`` and ``b``, written with one ``writev`` per batch, never
    joined), ``F`` (flush: sequence number and timeout), ``X`` (close: the same), ``Q``
    (counters, now). From the child: ``S`` (its counters, every ``REPORT_EVERY`` seconds
    while they change), ``A`` (the answer to ``F``/``X``/``Q``, with the counters), ``L``
    (a log record).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import marshal
import operator
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from readme_metrics._log import logger

try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not POSIX (no delivery process there)
    fcntl = None  # type: ignore[assignment]
from readme_metrics._version import __version__
from readme_metrics.capture import BodyCopy, Capture
from readme_metrics.har import ANONYMOUS_GROUP

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig

_HEAD = struct.Struct("!cIII")

#: Captures per ``writev`` (4 buffers each; Linux's IOV_MAX is 1024).
HAND_CHUNK = 64

#: The pipe to the child holds this much (Linux, ``F_SETPIPE_SZ``; the default is 64 KiB):
#: fewer wake-ups of both ends under load.
PIPE_BYTES = 1 << 20

#: The child builds what one read brought in slices of ``PACE_EVERY`` captures with
#: ``PACE_PAUSE`` seconds between them (a millisecond or so of work at a time): the app's
#: latency suffers from the child's bursts of work, even at the lowest CPU priority (see
#: docs/benchmarks.md). A backlog is built without pauses: a read of ``PACE_LIMIT``
#: captures or more, or ``BACKLOG_BYTES`` or more waiting in the pipe when a pause is due
#: (large captures make few per read, so their count alone would not tell).
PACE_EVERY = 32
PACE_PAUSE = 0.001
PACE_LIMIT = 512
BACKLOG_BYTES = 64 * 1024

#: The child's environment, unless the app's sets these. glibc's ``malloc`` otherwise
#: raises its mmap threshold once a large block is freed, then keeps large blocks (a
#: body, its base64, a batch) in its heap after use: the delivery process's peak while
#: 100 MB stream through was +3.4 MiB, +2.6 with this (docs/benchmarks.md).
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}

#: A received capture whose bodies are this large is kept in three pieces (see ``_frames``).
SPLIT_AT = 64 * 1024

#: The child reports its counters at most this often (and at once when asked).
REPORT_EVERY = 0.2

#: After this many deaths of a delivery process (a new one starts after each), the app's
#: process delivers by itself.
MAX_DEATHS = 3

#: At close, the child waits at most this long for its worker to count a batch cut short.
SETTLE = 0.2

#: Longest wait for a new child to say it is ready (imports done, same package version).
START_TIMEOUT = 15.0

#: Options the child does not take: callables stay in the app's process; aliases.
_NOT_SENT = frozenset({"grouping_function", "skip", "mask", "mask_event", "blacklist", "whitelist", "delivery_process"})

_COUNTERS = ("sent", "batches_sent", "batches_failed", "retried", "bytes_sent")


#: The capture's fields sent as they are (the bodies go raw, the group in a wire form).
_FIELDS: tuple[str, ...] = tuple(
    name for name in Capture.__slots__ if name not in ("request_body", "response_body", "group")
)
_get_fields = operator.attrgetter(*_FIELDS)


T = TypeVar("T")

_executable: list[str | None] = []


def usable_executable() -> str | None:
    """The Python to start the child with, or None when ``sys.executable`` is not a plain
    Python interpreter (embedded Python: uWSGI, mod_wsgi). Found once per process."""
    if not _executable:
        exe = sys.executable
        plain = re.fullmatch(r"(python|pypy)[0-9.]*(\.exe)?", os.path.basename(exe or ""), re.IGNORECASE)
        posix = fcntl is not None and hasattr(os, "writev")
        _executable.append(exe if exe and plain and posix and os.access(exe, os.X_OK) else None)
    return _executable[0]


def options_of(config: MetricsApiConfig) -> dict[str, Any]:
    """The configuration as keyword arguments the child can rebuild it from (plain data)."""
    from readme_metrics.config import MetricsApiConfig

    options: dict[str, Any] = {}
    for name in inspect.signature(MetricsApiConfig.__init__).parameters:
        if name == "self" or name in _NOT_SENT:
            continue
        options[name] = getattr(config, name)
    options["grouping_function"] = None
    options["delivery_process"] = False
    return options


# -- captures on the wire -----------------------------------------------------------------


def _wire_group(group: Any) -> tuple[Any, ...]:
    """The grouping function's result in a form ``marshal`` takes (see :func:`_group_of`)."""
    if group is ANONYMOUS_GROUP:
        return ("A",)
    if isinstance(group, dict):
        try:
            marshal.dumps(group)
            return ("R", group)
        except ValueError:
            pass
    if isinstance(group, Mapping):
        # The builder keeps only these keys, as text (api_key: checked for None / "").
        plain: dict[str, Any] = {}
        for key in ("api_key", "id", "label", "email"):
            if key not in group:
                continue
            value = group[key]
            if value is None or isinstance(value, str):
                plain[key] = value
            else:
                plain[key] = str(value)
        return ("R", plain)
    return ("E", type(group).__name__)


def _group_of(wire: tuple[Any, ...]) -> Any:
    if wire[0] == "A":
        return ANONYMOUS_GROUP
    if wire[0] == "R":
        return wire[1]
    return type(wire[1], (), {})()  # not a mapping: the builder says so, with this type's name


def capture_frames(capture: Capture) -> list[bytes | bytearray]:
    """One capture as the buffers of a ``C`` frame (the body copies are not copied)."""
    group = capture.group
    a, b = capture.request_body, capture.response_body
    fields = _get_fields(capture)
    try:  # the common case: a plain dict from the grouping function
        meta = marshal.dumps(
            (fields, ("A",) if group is ANONYMOUS_GROUP else ("R", group), a.limit, a.size, b.limit, b.size)
        )
    except ValueError:
        meta = marshal.dumps((fields, _wire_group(group), a.limit, a.size, b.limit, b.size))
    a_data, b_data = a.seal(), b.seal()  # written as they are: no copy of a 1 MiB body
    return [_HEAD.pack(b"C", len(meta), len(a_data), len(b_data)), meta, a_data, b_data]


def _frame(kind: bytes, meta: Any, a: bytes = b"") -> bytes:
    data = marshal.dumps(meta)
    return _HEAD.pack(kind, len(data), len(a), 0) + data + a


def _read_frame(stream: BinaryIO) -> tuple[bytes, Any, bytes, bytes] | None:
    """The next frame, or None at the end of the stream."""
    head = _read_exact(stream, _HEAD.size)
    if len(head) < _HEAD.size:
        return None
    kind, n_meta, n_a, n_b = _HEAD.unpack(head)
    meta = _read_exact(stream, n_meta)
    a = _read_exact(stream, n_a)
    b = _read_exact(stream, n_b)
    if len(meta) < n_meta or len(a) < n_a or len(b) < n_b:
        return None
    return kind, marshal.loads(meta), a, b


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    """``n`` bytes, fewer only at the end of the stream (a pipe may return less)."""
    data = stream.read(n) if n else b""
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    return data


class RawCapture:
    """A capture as a ``C`` frame (its ``parts``: the buffers of :func:`capture_frames`,
    or one received frame). The app's process makes one as the exchange ends, so the
    capture itself is freed at once and the worker only writes bytes; the delivery
    process's reader builds their logs as they are received. Either is decoded back into
    a :class:`Capture` by the thread that builds its log."""

    __slots__ = ("approx_bytes", "parts")

    def __init__(self, parts: list[bytes | bytearray]) -> None:
        self.parts = parts
        self.approx_bytes = 1024 + sum(map(len, parts))

    @classmethod
    def of(cls, capture: Capture) -> RawCapture:
        return cls(capture_frames(capture))

    def decode(self) -> Capture:
        parts = self.parts
        self.parts = []  # decoded once: the frame goes as soon as its bodies are cut out
        if len(parts) == 3:  # as the reader cuts a frame with large bodies: kept as they are
            head_meta, a, b = parts
            if isinstance(a, bytes) and isinstance(b, bytes):
                return _capture_of(marshal.loads(head_meta[_HEAD.size :]), a, b)
        frame = parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)
        _, n_meta, n_a, _ = _HEAD.unpack_from(frame)
        a_at = _HEAD.size + n_meta
        b_at = a_at + n_a
        return _capture_of(marshal.loads(frame[_HEAD.size : a_at]), frame[a_at:b_at], frame[b_at:])


def _capture_of(meta: Any, a: bytes, b: bytes) -> Capture:
    fields, group, a_limit, a_size, b_limit, b_size = meta
    capture: Capture = Capture.__new__(Capture)
    for name, value in zip(_FIELDS, fields, strict=True):
        setattr(capture, name, value)
    capture.group = _group_of(group)
    capture.request_body = _body(a, a_limit, a_size)
    capture.response_body = _body(b, b_limit, b_size)
    return capture


def _body(data: bytes, limit: int, size: int) -> BodyCopy:
    body = BodyCopy(limit)
    body.add(data)
    body.size = size
    return body


# -- the app's side -----------------------------------------------------------------------


#: The child's program: this very copy of the package (found in the directory given as
#: its argument, not by a search of ``sys.path``, whose order stays as it is, without the
#: working directory), then :func:`main`.
_CHILD = (
    "import sys, importlib.machinery, importlib.util; del sys.path[0]; "
    "spec = importlib.machinery.PathFinder.find_spec('readme_metrics', [sys.argv[1]]); "
    "module = importlib.util.module_from_spec(spec); sys.modules['readme_metrics'] = module; "
    "spec.loader.exec_module(module); "
    "from readme_metrics._sidecar import main; main()"
)


class SidecarGoneError(Exception):
    """The delivery process is gone (or could not start). ``written``: the bytes of the
    failed write that went through; ``handed``: how many of the captures of the failed
    :meth:`Sidecar.hand` reached it whole."""

    written = 0
    handed = 0


class Sidecar:
    """The app process's handle on one delivery process.

    Written to by the client's worker thread only; a reader thread takes the child's
    reports. ``handed`` counts the captures written, ``report`` is the child's last
    counters (``received`` among them).
    """

    def __init__(self, config: MetricsApiConfig, executable: str) -> None:
        # The child imports this very package (not one in its working directory).
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(
            [executable, "-c", _CHILD, package_root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            env={**CHILD_ENV, **os.environ},  # what the app's environment sets wins
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._wfd = self.proc.stdin.fileno()
        with contextlib.suppress(OSError, AttributeError):  # Linux only; above pipe-max-size
            fcntl.fcntl(self._wfd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._cond = threading.Condition(threading.Lock())
        self.handed = 0
        self.report: dict[str, Any] = {}
        self.closed = False  # the child's stdout ended (it exited, or died)
        self.ready: bool | None = None  # the child's first answer: it runs the same package
        self.ending = False  # the client is letting it go (set under the client's lock)
        self._answers: dict[int, bool] = {}
        self._seq = 0
        self._write_lock = threading.Lock()
        self.pid = os.getpid()
        level = logger.getEffectiveLevel()
        self._reader = threading.Thread(target=self._read_loop, name="readme-metrics-sidecar-reader", daemon=True)
        try:
            self._write([_frame(b"I", (level, _FIELDS, __version__), pickle.dumps(options_of(config)))])
            self._reader.start()
            # Nothing is handed before the child is known to take it: a package upgraded on
            # disk since the app started would not read this process's captures.
            end = time.monotonic() + START_TIMEOUT
            with self._cond:
                while self.ready is None and not self.closed and (remaining := end - time.monotonic()) > 0:
                    self._cond.wait(remaining)
            if not self.ready:
                raise SidecarGoneError("it did not start" if self.ready is None else "another package version")
        except BaseException:
            self.end(0.0)
            raise

    # writing (the worker thread; flush/close from other threads under the write lock)

    def _write(self, buffers: list[bytes | bytearray]) -> None:
        """Write all of ``buffers`` (at most 4 x ``HAND_CHUNK``); SidecarGoneError if the child
        is gone (with the bytes ``written`` before)."""
        written = 0
        with self._write_lock:
            try:
                written = os.writev(self._wfd, buffers)
                total = sum(map(len, buffers))
                if written < total:  # a short write (a signal, or the child exiting): the rest
                    rest = memoryview(b"".join(buffers))[written:]
                    while rest:
                        n = os.write(self._wfd, rest)
                        written += n
                        rest = rest[n:]
            except (OSError, ValueError) as exc:  # EPIPE: the child exited
                error = SidecarGoneError(str(exc))
                error.written = written
                raise error from exc

    def hand(self, captures: list[RawCapture], on_chunk: Callable[[int], None] | None = None) -> None:
        """Write ``captures`` to the child, ``HAND_CHUNK`` per ``writev``: the GIL is
        released between chunks, so the app's threads never wait long for it.
        ``on_chunk(n)`` is told of each chunk written. If the child is gone, the error's
        ``handed`` is how many of ``captures`` reached it whole (the rest did not)."""
        for start in range(0, len(captures), HAND_CHUNK):
            chunk = captures[start : start + HAND_CHUNK]
            buffers: list[bytes | bytearray] = []
            for capture in chunk:
                buffers += capture.parts
            try:
                self._write(buffers)
            except SidecarGoneError as exc:
                whole, left = 0, exc.written
                for capture in chunk:
                    size = capture.approx_bytes - 1024
                    if left < size:
                        break
                    left -= size
                    whole += 1
                with self._cond:
                    self.handed += whole
                exc.handed = start + whole
                raise
            with self._cond:
                self.handed += len(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))

    def ask(self, kind: bytes, timeout: float, wait: float | None = None) -> bool | None:
        """Send ``F`` (flush), ``X`` (close) or ``Q`` (counters) with ``timeout``; the
        child's answer (its counters are in ``report`` then), or None if none came within
        ``wait`` (default: ``timeout`` plus a moment)."""
        seq = self.request(kind, timeout)
        return self.answer(seq, time.monotonic() + (timeout + 0.5 if wait is None else wait))

    def request(self, kind: bytes, timeout: float) -> int:
        """Send ``kind`` with ``timeout`` without waiting; its sequence number."""
        with self._cond:
            self._seq += 1
            seq = self._seq
        self._write([_frame(kind, (seq, max(0.0, timeout)))])
        return seq

    def answer(self, seq: int, end: float) -> bool | None:
        """The child's answer to request ``seq``, or None if none came by ``end``."""
        with self._cond:
            while seq not in self._answers:
                remaining = end - time.monotonic()
                if self.closed or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._answers.pop(seq)

    def unsettled(self) -> int:
        """Captures handed and not yet sent or dropped by the child."""
        report = self.report
        return self.handed - int(report.get("received", 0)) + int(report.get("waiting", 0))

    def end(self, timeout: float) -> None:
        """Close the pipe and wait up to ``timeout`` for the child to exit; kill it after."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(1.0)
        if self._reader.ident is not None:
            self._reader.join(1.0)

    def abandon(self) -> None:
        """In a forked child of the app: let go of the parent's pipes, leave the child."""
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()  # the file object owns the descriptor: it must know
        self.proc.stdin = self.proc.stdout = None

    def _read_loop(self) -> None:
        assert self.proc.stdout is not None
        stream: Any = self.proc.stdout
        try:
            while True:
                frame = _read_frame(stream)
                if frame is None:
                    return
                kind, meta, _, _ = frame
                if kind == b"R":
                    with self._cond:
                        self.ready = bool(meta)
                        self._cond.notify_all()
                elif kind == b"S":
                    with self._cond:
                        self.report = meta
                elif kind == b"A":
                    seq, ok, report = meta
                    with self._cond:
                        self.report = report
                        self._answers[seq] = ok
                        self._cond.notify_all()
                elif kind == b"L":
                    level, message = meta
                    logger.log(level, "%s", message)
        except Exception:  # a broken frame: treat as the child's end
            logger.exception("readme_metrics: unreadable report from the delivery process")
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5.0)  # reaped: no zombie left behind


def merge_report(stats: dict[str, Any], report: Mapping[str, Any]) -> None:
    """Add a child's counters (``report``) into ``stats`` (the app process's own)."""
    for name in _COUNTERS:
        stats[name] += int(report.get(name, 0))
    for reason, count in report.get("dropped", {}).items():
        # Its full queue is not ours: those events were queued here (see docs/delivery.md).
        stats["dropped"]["delivery_queue_full" if reason == "queue_full" else reason] += count
    if report.get("last_error_time") and (stats["last_error_time"] or 0) <= report["last_error_time"]:
        stats["last_error"] = report.get("last_error")
        stats["last_error_time"] = report["last_error_time"]
    if report.get("last_success") and (stats["last_success"] or 0) <= report["last_success"]:
        stats["last_success"] = report["last_success"]


# -- the child ----------------------------------------------------------------------------


def _frames(stream: Any) -> Iterator[tuple[bytes | None, Any, list[RawCapture]]]:
    """The child's reading: ``(kind, meta, captures)`` for each control frame, with the
    capture frames received before it (``kind`` None at the end of the stream). Captures
    are cut out of the stream undecoded (see :class:`RawCapture`): one copy each, and for
    bodies of ``SPLIT_AT`` bytes or more, their header, request body and response body
    apart, so that decoding copies nothing again. The stream is read in large chunks, so
    the reader thread wakes a few times per second under load."""
    buf = bytearray()
    head = _HEAD.size
    while True:
        chunk = stream.read(PIPE_BYTES)
        if not chunk:
            yield None, None, []
            return
        buf += chunk
        raws: list[RawCapture] = []
        pos = 0
        control: list[tuple[bytes, Any, list[RawCapture]]] = []
        with memoryview(buf) as view:  # frames are copied out once, straight from the buffer
            while len(buf) - pos >= head:
                kind, n_meta, n_a, n_b = _HEAD.unpack_from(buf, pos)
                end = pos + head + n_meta + n_a + n_b
                if end > len(buf):
                    break
                if kind == b"C" and n_a + n_b >= SPLIT_AT:
                    a_at = pos + head + n_meta
                    b_at = a_at + n_a
                    raws.append(RawCapture([bytes(view[pos:a_at]), bytes(view[a_at:b_at]), bytes(view[b_at:end])]))
                elif kind == b"C":
                    raws.append(RawCapture([bytes(view[pos:end])]))
                else:
                    control.append((kind, marshal.loads(view[pos + head : pos + head + n_meta]), raws))
                    raws = []
                pos = end
        if pos == len(buf):
            buf = bytearray()  # let a large frame's buffer go, not just its contents
        else:
            del buf[:pos]
        yield from control
        if raws:
            yield b"", None, raws


class _Reporter(logging.Handler):
    """The child's warnings, sent to the app's process to be logged there."""

    def __init__(self, send: Any) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self._send(b"L", (record.levelno, message))
        except Exception:  # the pipe is gone: nobody to tell
            pass


def waiting(fd: int) -> int:
    """Bytes waiting to be read from the pipe ``fd`` (0 where that cannot be asked)."""
    if fcntl is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]  # type: ignore[no-any-return]
    except OSError:
        return 0


def paced(items: list[T], fd: int, pause: Callable[[float], object] = time.sleep) -> Iterator[list[T]]:
    """``items`` (what one read of the pipe ``fd`` brought) in slices of ``PACE_EVERY``,
    with a pause of ``PACE_PAUSE`` before each slice but the first, unless there is a
    backlog (see ``PACE_LIMIT`` and ``BACKLOG_BYTES``)."""
    pace = len(items) < PACE_LIMIT
    for start in range(0, len(items), PACE_EVERY):
        if start and pace:
            pace = waiting(fd) < BACKLOG_BYTES  # once behind, the rest of the read goes at once
            if pace:
                pause(PACE_PAUSE)
        yield items[start : start + PACE_EVERY]


def main() -> None:
    """The delivery process: read captures from stdin until it closes, deliver them."""
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    from readme_metrics import delivery
    from readme_metrics.config import MetricsApiConfig
    from readme_metrics.delivery import Client

    delivery.YIELD_AFTER = float("inf")  # no app threads here to give the GIL to

    stdin = os.fdopen(0, "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed to stdout by accident goes to stderr, not into the frames
    out_lock = threading.Lock()

    def send(kind: bytes, meta: Any) -> None:
        data = _frame(kind, meta)
        with out_lock:
            out.write(data)

    first = _read_frame(stdin)
    if first is None or first[0] != b"I":
        return
    level, fields, version = first[1]
    if tuple(fields) != _FIELDS or version != __version__:
        send(b"R", False)
        return
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(_Reporter(send))
    client = Client(MetricsApiConfig(**pickle.loads(first[2])))
    send(b"R", True)
    received = 0
    counting = threading.Lock()  # "received" and the client's counters move together
    stop = threading.Event()

    def report() -> dict[str, Any]:
        with counting:
            stats = client.stats()
            stats["received"] = received
        return stats

    def reporter() -> None:
        last: dict[str, Any] = {}
        while not stop.wait(REPORT_EVERY):
            now = report()
            if now != last:
                with contextlib.suppress(OSError):
                    send(b"S", now)
                last = now

    def flush(seq: int, timeout: float) -> None:
        ok = client.flush(timeout)
        with contextlib.suppress(OSError):
            send(b"A", (seq, ok, report()))

    threading.Thread(target=reporter, name="readme-metrics-sidecar-reporter", daemon=True).start()
    try:
        for kind, meta, raws in _frames(stdin):
            for piece in paced(raws, 0):
                with counting:
                    client.submit_built(piece)
                    received += len(piece)
            if kind is None:  # the app's process is gone: deliver what is held, then exit
                client.close()
                break
            if kind == b"Q":
                send(b"A", (meta[0], True, report()))
            elif kind == b"F":  # in a thread: counters (Q) stay answered meanwhile
                threading.Thread(target=flush, args=meta, name="readme-metrics-sidecar-flush", daemon=True).start()
            elif kind == b"X":
                seq, timeout = meta
                client.close(timeout)
                # A batch the deadline cut short is counted by the worker just after: wait
                # for that, so the last report counts each event once (sent, dropped or held).
                settle = time.monotonic() + SETTLE
                while client.stats()["waiting"] and time.monotonic() < settle:
                    time.sleep(0.005)
                send(b"A", (seq, True, report()))
                stop.set()
                # Every event is accounted for in that answer (sent, dropped, or still
                # held and so counted lost by the app's process): exit now, not after
                # another flush at interpreter exit.
                with contextlib.suppress(OSError):
                    send(b"S", report())
                os._exit(0)
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            send(b"S", report())
