"""Turning a batch's bytes into JSON within bounds: its size, what parsing it costs, how many at once.

Bytes alone do not bound memory: parsed, 64 MiB of ``[],`` are 21 million lists (1.7 GiB).
So before a body is parsed, :func:`check_cost` counts what parsing it would build, on the
bytes and in C-speed passes (``bytes.replace``, ``translate``, one regular expression),
and refuses with 413 a body over ``max_values`` or nested deeper than ``max_depth``:

- every array, object, string, number, ``true``/``false``/``null`` and object key
  costs 1, and an empty array or object costs 2 (the count is ``1 +`` the number of
  ``[``, ``{``, ``,`` and ``:`` outside strings);
- the depth is the largest number of arrays and objects open at once (``[[1]]``: 2).

For a text that is not valid JSON the count holds up to the first error, which is where
the parser stops building; the body must be UTF-8 (the only encoding in which those bytes
cannot hide inside a character).

The body is then parsed by orjson (about twice as fast as the standard library, which calls
back into Python for every float); a body orjson refuses, and one holding a run of 19 or
more digits (orjson turns an integer beyond 64 bits into a float), goes to the standard
library's parser instead, so that every answer, and every error message, stays its.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

try:  # a dependency on CPython; the standard library's json elsewhere
    import orjson
except ImportError:  # pragma: no cover - PyPy
    orjson = None  # type: ignore[assignment]

from readme_metrics.collector.errors import HttpError

DEFAULT_MAX_BATCH_BYTES = 64 * 1024 * 1024
#: A full SDK batch (500 logs, typically 100 to a few hundred values each) stays well below.
DEFAULT_MAX_BATCH_VALUES = 1_000_000
#: Log objects nest about 10 deep; more is refused before the parser recurses.
DEFAULT_MAX_BATCH_DEPTH = 64
#: Batches read, parsed or stored at once; the next one gets 503 with ``Retry-After``.
DEFAULT_MAX_CONCURRENT_INGESTS = 4

# Every byte but a quote and JSON's structure.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{},:')
_STRING = re.compile(rb'"[^"]*"')
_DEPTH_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))
# Brackets only, ``{}`` written ``[]`` (the depth does not tell them apart either).
_BRACKETS = bytes.maketrans(b"{}", b"[]")
#: Peeling more levels than this one by one costs more than the exact pass over the skeleton.
_PEEL_LEVELS = 100
# Every digit a 0: an integer orjson would turn into a float (or a long float, or digits in
# a string: the standard library then) is a run of 19 zeros (faster than a regular expression).
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGITS = b"0" * 19


@dataclass(frozen=True)
class BatchLimits:
    """What one JSON body may cost: bytes (after decompression), values, nesting depth."""

    max_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_values: int = DEFAULT_MAX_BATCH_VALUES
    max_depth: int = DEFAULT_MAX_BATCH_DEPTH


def json_cost(body: bytes, max_values: int) -> tuple[int, int]:
    """(values, depth) of a UTF-8 JSON text as described above, without parsing it.

    The depth is only computed when the values are within ``max_values`` (it is then
    cheap); otherwise it is reported as 0.
    """
    # Escapes first (``\\`` then ``\"``, left to right as the parser pairs them), then keep
    # only quotes and structure: a string is then a quote, maybe structure, a quote.
    skeleton = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    # Two quotes side by side are a string with no structure in it (between two strings
    # there is always a ',' or ':'): removed without a regular expression.
    skeleton = skeleton.replace(b'""', b"")
    strings = skeleton.count(b'"') // 2
    if strings > max_values:  # each string is a value: too many already (and cheap to say)
        return strings, 0
    skeleton = _STRING.sub(b"", skeleton)
    values = 1 + sum(skeleton.count(c) for c in (b"[", b"{", b",", b":"))
    if values > max_values:
        return values, 0
    return values, _depth(skeleton)


def _depth(skeleton: bytes) -> int:
    """The largest number of brackets open at once in a skeleton of brackets, ``,`` and ``:``.

    Balanced brackets (valid JSON) lose exactly one level each time every ``[]`` is removed
    (C-speed passes); anything else (or very deep nesting) is counted byte by byte.
    """
    brackets = skeleton.translate(_BRACKETS, b",:")
    for level in range(_PEEL_LEVELS):
        if not brackets:
            return level
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    return max(accumulate(map(_DEPTH_STEP.__getitem__, skeleton)), default=0)


def check_cost(body: bytes, limits: BatchLimits) -> None:
    """413 if parsing ``body`` would build more than the limits allow."""
    values, depth = json_cost(body, limits.max_values)
    if values > limits.max_values:
        raise HttpError(413, f"the body holds more than {limits.max_values} JSON values")
    if depth > limits.max_depth:
        raise HttpError(413, f"the body nests JSON deeper than {limits.max_depth} levels")


#: Gzip members one body may hold (the SDK sends one): each member costs a copy of the
#: rest of the body, so millions of empty members would take minutes of CPU.
MAX_GZIP_MEMBERS = 64


def decompress_gzip(data: bytes, limit: int) -> bytes:
    """Gunzip ``data`` (up to :data:`MAX_GZIP_MEMBERS` members) without producing more than
    ``limit`` bytes."""
    out = bytearray()
    members = 0
    while data:
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise HttpError(400, f"the gzip body has more than {MAX_GZIP_MEMBERS} members")
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += decoder.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise HttpError(400, f"the body is not valid gzip: {exc}") from None
        if len(out) > limit:
            raise HttpError(413, f"the decompressed body is larger than {limit} bytes")
        if not decoder.eof:
            raise HttpError(400, "the gzip body is truncated")
        data = decoder.unused_data
    return bytes(out)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def parse_json(body: bytes | str) -> Any:
    """Strict JSON: ``NaN``, ``Infinity`` and numbers beyond a float's range are ``ValueError``.

    (They would be stored, then served back as text that is not JSON.) Bytes are UTF-8;
    lone surrogates pass through to be refused by the caller with a clear reason.
    """
    if isinstance(body, bytes):
        if orjson is not None and _LONG_DIGITS not in body.translate(_DIGITS_AS_ZERO):
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                pass  # the standard library says why (or accepts what it accepted before)
        body = body.decode("utf-8", "surrogatepass")  # UnicodeDecodeError is a ValueError
    return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)


def decode_json_body(body: bytes, encoding: str, limits: BatchLimits) -> Any:
    """The JSON value of a request body (``Content-Encoding`` gzip or none), within ``limits``."""
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        body = decompress_gzip(body, limits.max_bytes)
    elif encoding not in ("", "identity"):
        raise HttpError(415, f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    check_cost(body, limits)
    try:
        return parse_json(body)
    except (ValueError, RecursionError) as exc:
        raise HttpError(400, f"the body is not JSON: {exc}") from None
