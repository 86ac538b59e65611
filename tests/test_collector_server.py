"""The collector's server side (uvicorn): a stalled body frees its ingest slot; a chunked
body is refused as soon as it passes the bound, not once it is all buffered."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from readme_metrics.collector import Collector, Storage
from tests.collector_rig import auth, make_log, post

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def one_at_a_time(tmp_path: Path) -> Iterator[Collector]:
    storage = Storage(tmp_path / "s.sqlite3")
    with Collector(storage, max_concurrent_ingests=1, body_timeout=1.0, max_batch_bytes=100_000) as c:
        yield c


def _head(length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /v1/request HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth('k')}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def test_a_stalled_body_gets_408_and_frees_its_slot(one_at_a_time: Collector) -> None:
    body = json.dumps([make_log()]).encode()
    with socket.create_connection(("127.0.0.1", one_at_a_time.port), timeout=10) as stalled:
        stalled.sendall(_head(len(body)) + body[:50])
        assert post(one_at_a_time.url, [make_log()], key="k")[0] == 503  # the one slot is taken
        answer = b"".join(iter(lambda: stalled.recv(65536), b""))  # then the server closes
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert post(one_at_a_time.url, [make_log()], key="k") == (202, {"accepted": 1, "stored": 1})


def test_a_chunked_body_is_refused_once_past_the_bound(one_at_a_time: Collector) -> None:
    """413 arrives while the client is still sending (it would never end: no buffering)."""
    piece = b"%x\r\n%s\r\n" % (10_000, b" " * 10_000)
    with socket.create_connection(("127.0.0.1", one_at_a_time.port), timeout=10) as sock:
        sock.sendall(_head(None) + b"1\r\n[\r\n")
        answer = b""
        for _ in range(100):  # up to 1 MB; the bound is 100 KB
            try:
                sock.sendall(piece)
            except OSError:  # closed by the server after its answer
                break
            sock.settimeout(0.05)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
        sock.settimeout(10)
        with contextlib.suppress(OSError):  # a reset after the answer
            answer += b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than 100000 bytes" in answer
    assert post(one_at_a_time.url, [make_log()], key="k")[0] == 202
