"""Real servers (gunicorn, uvicorn, …) started as subprocesses on 127.0.0.1, and a raw client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess; ``stop()`` sends SIGTERM and waits (a graceful stop)."""

    def __init__(self, argv: Sequence[str], port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            list(argv), cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if self.proc.poll() is None or self.proc.stdout is None:
            return ""
        return self.proc.stdout.read().decode(errors="replace")

    def stop(self, timeout: float = 30.0) -> str:
        """SIGTERM, wait for the exit, return what the server printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.output()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def gunicorn(app: str, env: dict[str, str] | None = None, *extra: str, threads: int = 4) -> Server:
    port = free_port()
    argv = [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "--threads", str(threads), "-w", "1"]
    argv += ["--graceful-timeout", "20", "--no-control-socket", *extra, app]
    return Server(argv, port, env)


def uvicorn(app: str, env: dict[str, str] | None = None, *extra: str) -> Server:
    port = free_port()
    argv = [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *extra, app]
    return Server(argv, port, env)


@dataclass
class RawResponse:
    raw: bytes
    status_line: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def without_date(self) -> bytes:
        """The raw bytes with the Date header line removed (it differs between runs)."""
        lines = self.raw.split(b"\r\n")
        return b"\r\n".join(line for line in lines if not line.lower().startswith(b"date:"))

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def raw_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    chunked: bool = False,
    timeout: float = 15.0,
) -> RawResponse:
    """One request on a fresh connection (``Connection: close``); the response's exact bytes."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    payload = b""
    if body is not None:
        if chunked:
            lines.append("Transfer-Encoding: chunked")
            pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
            payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(body)}")
            payload = body
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    parsed = [tuple(h.decode("latin-1").split(":", 1)) for h in header_lines]
    hdrs = [(k.strip(), v.strip()) for k, v in parsed]
    body_out = rest
    if any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in hdrs):
        body_out = _dechunk(rest)
    return RawResponse(raw, status_line, hdrs, body_out)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)
