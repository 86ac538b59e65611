"""JSON lines: one log object per line, in a file (rotated by size) or a stream.

Each line is the very bytes of a log object of the wire protocol (``docs/protocol.md``),
so ``jq`` reads the file and ``readme-metrics import FILE`` loads it into the collector.

What is guaranteed (``docs/exporters.md``)
    A batch is written with **one** ``write(2)`` of whole lines on a descriptor opened with
    ``O_APPEND``: several processes (gunicorn workers) may write one file, and on a local
    Linux file system (ext4, xfs, tmpfs, ...) their lines never interleave nor overwrite
    each other. (POSIX promises the append position, not that a large write is not split;
    Linux keeps a regular file's write whole. Not on NFS.) Or give each process its own
    file: ``{pid}`` in the path is replaced by the process id (after a fork, the child
    opens its own).
Rotation
    With ``max_bytes`` a batch that would take the file past it first renames
    ``path.{n-1}`` to ``path.{n}`` ... ``path`` to ``path.1`` (``backups`` are kept; the
    oldest is deleted) and starts a new file. Writers of one file agree through an
    ``flock`` on ``path.lock``: each write holds it shared, a rotation exclusive, and a
    writer whose file was renamed under it reopens ``path`` before writing; so rotation
    under load from several processes loses and duplicates no line (beyond the oldest
    backup, deleted by design).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Sequence
from typing import IO, Any

from readme_metrics.exporters.base import ExportError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no rotation lock (one process per file)
    fcntl = None  # type: ignore[assignment]

#: Default size at which a file is rotated, and how many rotated files are kept.
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUPS = 5


class JsonLinesExporter:
    """Writes each log as one line of JSON to ``path_or_stream``: a path (``str`` or
    ``os.PathLike``; ``{pid}`` in it is the process id) or an open stream (binary or
    text, e.g. ``sys.stdout``; never rotated nor closed). ``max_bytes`` (0: never) and
    ``backups`` rotate a file by size."""

    name = "jsonl"

    def __init__(
        self,
        path_or_stream: str | os.PathLike[str] | IO[Any],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an integer >= 0, got {max_bytes!r}")
        if isinstance(backups, bool) or not isinstance(backups, int) or backups < 0:
            raise ValueError(f"backups must be an integer >= 0, got {backups!r}")
        self.stream: IO[Any] | None = None
        self.path: str | None = None
        if isinstance(path_or_stream, (str, os.PathLike)):
            self.path = os.fspath(path_or_stream)
            if not self.path:
                raise ValueError("JsonLinesExporter: the path is empty")
        elif hasattr(path_or_stream, "write"):
            self.stream = path_or_stream
        else:
            raise ValueError(f"JsonLinesExporter needs a path or a stream, not {type(path_or_stream).__name__}")
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._owner = os.getpid()  # the process that opened the descriptors
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"JsonLinesExporter({self.path if self.path is not None else self.stream!r})"

    @property
    def current_path(self) -> str | None:
        """The path this process writes to now (``{pid}`` replaced)."""
        return None if self.path is None else self.path.replace("{pid}", str(os.getpid()))

    def export(self, logs: Sequence[bytes], timeout: float) -> int:
        if not logs:
            return 0
        data = b"\n".join(logs) + b"\n"
        with self._lock:
            if self.stream is not None:
                self._write_stream(data)
            else:
                try:
                    self._write_file(data)
                except OSError as exc:
                    self._close_locked()
                    raise ExportError(f"cannot write {self.current_path}: {exc}") from exc
        return len(data)

    def _write_stream(self, data: bytes) -> None:
        stream = self.stream
        assert stream is not None
        try:
            if isinstance(stream, io.TextIOBase):
                stream.write(data.decode("utf-8"))
            else:
                stream.write(data)
            stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: a closed stream
            raise ExportError(f"cannot write to {stream!r}: {exc}") from exc

    def _write_file(self, data: bytes) -> None:
        path = self.current_path
        assert path is not None
        if self._owner != os.getpid():
            # A forked child: its own descriptors (an flock is shared by the descriptors
            # of one open, so the parent's lock would not keep the two apart). The
            # parent's are the parent's to close.
            self._fd = self._lock_fd = None
            self._owner = os.getpid()
        if not self.max_bytes or fcntl is None:
            fd = self._open(path)
            _write_all(fd, data)
            return
        lock_fd = self._lock_file(path)
        fcntl.flock(lock_fd, fcntl.LOCK_SH)
        try:
            fd = self._current(path)
            if os.fstat(fd).st_size + len(data) > self.max_bytes and os.fstat(fd).st_size > 0:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)  # (the shared lock is converted)
                fd = self._current(path)  # another process may have rotated meanwhile
                if os.fstat(fd).st_size + len(data) > self.max_bytes and os.fstat(fd).st_size > 0:
                    self._rotate(path)
                    fd = self._current(path)
                fcntl.flock(lock_fd, fcntl.LOCK_SH)
            _write_all(fd, data)
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _open(self, path: str) -> int:
        if self._fd is None:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        return self._fd

    def _current(self, path: str) -> int:
        """The descriptor of the file now at ``path`` (reopened if it was rotated away)."""
        fd = self._open(path)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        mine = os.fstat(fd)
        if now is None or (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
            os.close(fd)
            self._fd = None
            fd = self._open(path)
        return fd

    def _lock_file(self, path: str) -> int:
        if self._lock_fd is None:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            self._lock_fd = os.open(path + ".lock", flags, 0o644)
        return self._lock_fd

    def _rotate(self, path: str) -> None:
        """``path.{n-1}`` -> ``path.{n}``, ..., ``path`` -> ``path.1`` (held exclusively)."""
        if self.backups == 0:
            os.unlink(path)
            return
        for index in range(self.backups - 1, 0, -1):
            older = f"{path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{path}.{index + 1}")
        os.replace(path, f"{path}.1")

    def _close_locked(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None

    def shutdown(self) -> None:
        """Close the file (it is opened again by the next export). A stream stays open."""
        with self._lock:
            self._close_locked()


def _write_all(fd: int, data: bytes) -> None:
    """One ``write`` of ``data``; the rest, should the kernel take less (a full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
