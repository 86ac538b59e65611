"""Reading a request body within a byte bound: ``Content-Length`` or chunked, strictly framed.

A ``Content-Length`` must be plain ASCII digits (``int()`` would take ``-1``: read until
the client closes, no bound; ``+5`` and ``1_000`` too), all copies equal; a chunk size
must be hexadecimal digits. Anything else is 400 and the connection closes, since what
follows cannot be told apart from a next request.
"""

from __future__ import annotations

import io
import re
from email.message import Message

from readme_metrics.collector.errors import HttpError

_DIGITS = re.compile(r"[0-9]+")
_HEX_DIGITS = re.compile(rb"[0-9A-Fa-f]+")


def read_body(rfile: io.BufferedIOBase, headers: Message, limit: int) -> bytes:
    """The body of the request whose ``headers`` were read from ``rfile``, at most ``limit`` bytes."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        return _read_chunked(rfile, limit)
    lengths = headers.get_all("Content-Length") or []
    if not lengths:
        return b""
    length_text = lengths[0].strip(" \t")
    if not _DIGITS.fullmatch(length_text) or any(other.strip(" \t") != length_text for other in lengths):
        raise HttpError(400, "malformed Content-Length", close=True)
    length = int(length_text)
    if length > limit:
        if length > 2 * limit:
            raise HttpError(413, f"the body is larger than {limit} bytes", close=True)
        while length > 0:  # read it, so that the client gets the answer, not a reset
            chunk = rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)
        raise HttpError(413, f"the body is larger than {limit} bytes")
    body = rfile.read(length)
    if len(body) < length:
        raise HttpError(400, "the body is shorter than its Content-Length", close=True)
    return body


def _read_chunked(rfile: io.BufferedIOBase, limit: int) -> bytes:
    out = bytearray()
    while True:
        line = rfile.readline(1024)
        size_text = line.split(b";")[0].strip(b" \t\r\n")
        if not _HEX_DIGITS.fullmatch(size_text):  # int(x, 16) takes "-1", "0x10", "1_0"
            raise HttpError(400, "malformed chunked body", close=True)
        size = int(size_text, 16)
        if size == 0:
            while rfile.readline(1024).strip():  # trailers
                pass
            return bytes(out)
        if len(out) + size > limit:
            raise HttpError(413, f"the body is larger than {limit} bytes", close=True)
        chunk = rfile.read(size)
        if len(chunk) < size:
            raise HttpError(400, "the chunked body is truncated", close=True)
        out += chunk
        rfile.readline(1024)
