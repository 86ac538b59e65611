"""A lean local metrics endpoint for the benchmark: accepts every post, counts, answers fast.

Runs in its own process (``python bench/sink.py PORT``) so that it never competes with the
server under test for the GIL. It speaks just enough HTTP/1.1 for the SDKs' clients
(``requests``, keep-alive, ``Content-Length`` or chunked bodies, gzip-encoded bodies) and
answers every request ``200 {}``: ReadMe's ``POST /v1/request``, Moesif's
``POST /v1/events/batch`` and its ``GET /v1/config`` alike.

It counts posts, bytes and events per sender (the Basic auth user or Moesif's application
id), so the benchmark can check that each SDK really delivered what it served.
``GET /__stats`` returns the tallies as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import sys
from collections import defaultdict
from typing import Any

TALLY: dict[str, dict[str, int]] = defaultdict(
    lambda: {"posts": 0, "bytes": 0, "events": 0, "audit_ends": 0, "truncated": 0}
)
#: The last bytes of the audit case's 1 MB body (``bench/audit.lua``): a whole log holds it
#: twice (request and response), a cut one less.
AUDIT_END = b"AUDIT-END"


def _sender(headers: dict[bytes, bytes]) -> str:
    auth = headers.get(b"authorization", b"")
    if auth.lower().startswith(b"basic "):
        try:
            return base64.b64decode(auth[6:].strip()).decode("utf-8", "replace").split(":", 1)[0]
        except ValueError:
            return "bad-auth"
    app_id = headers.get(b"x-moesif-application-id")
    if app_id:
        return app_id.decode("latin-1")
    return "unknown"


def _count_events(path: bytes, body: bytes) -> int:
    """Events in a batch, by a cheap marker count (no JSON parsing on the hot path)."""
    if b"startedDateTime" in body:  # a HAR log per event (ReadMe)
        return body.count(b'"startedDateTime"')
    if path.startswith(b"/v1/logs"):  # OTLP/JSON: one log record per event
        return body.count(b'"timeUnixNano"')
    if path.startswith(b"/v1/events"):  # Moesif: one "request" object per event
        n = body.count(b'"request":') + body.count(b'"request" :')
        return n or 1
    return 0


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        parts: list[bytes] = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readline()
    length = int(headers.get(b"content-length", b"0") or 0)
    return await reader.readexactly(length) if length else b""


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            method, path = request_line.split(b" ", 2)[:2]
            headers: dict[bytes, bytes] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            body = await _read_body(reader, headers)
            answer = b"{}"
            if method == b"GET" and path == b"/__stats":
                answer = json.dumps(TALLY).encode()
            elif method == b"POST":
                if headers.get(b"content-encoding", b"").lower() == b"gzip":
                    body = gzip.decompress(body)
                tally = TALLY[_sender(headers)]
                tally["posts"] += 1
                tally["bytes"] += len(body)
                tally["events"] += _count_events(path, body)
                tally["audit_ends"] += body.count(AUDIT_END)
                tally["truncated"] += body.count(b'"_truncated"')
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(answer), answer)
            )
            await writer.drain()
            if headers.get(b"connection", b"").lower() == b"close":
                return
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def stats(url: str) -> dict[str, Any]:
    """The sink's tallies (a client helper for the benchmark)."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/__stats", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
