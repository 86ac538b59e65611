"""A batch's bytes into JSON: gzip decompressed within a byte bound, strict parsing."""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

from readme_metrics.collector.errors import HttpError

DEFAULT_MAX_BATCH_BYTES = 64 * 1024 * 1024


def decompress_gzip(data: bytes, limit: int) -> bytes:
    """Gunzip ``data`` (several members allowed) without producing more than ``limit`` bytes."""
    out = bytearray()
    while data:
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

    (They would be stored, then served back as text that is not JSON.)
    """
    return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
