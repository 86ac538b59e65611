"""Verify the signature of a webhook call from ReadMe.

ReadMe can call your API's webhook to ask who a documentation reader is. Each call carries
``ReadMe-Signature: t=<unix time in ms>,v0=<hex HMAC-SHA256>``, keyed by the webhook
secret, over ``"<t>." + <the JSON body>``. Check it before answering::

    from readme_metrics.webhooks import verify, VerificationError

    @app.post("/webhook")
    def webhook():
        try:
            verify(request.get_data(), request.headers.get("readme-signature"), SECRET)
        except VerificationError as exc:
            return {"error": str(exc)}, 401
        ...

``body`` may be the raw request body (``bytes`` or ``str``), verified exactly as it was
sent: this is the reliable form. It may also be the parsed JSON (a ``dict`` or ``list``),
which is serialized again the way JavaScript's ``JSON.stringify`` does it (compact,
non-ASCII characters kept, integral floats written as integers), as ReadMe signs it.

Every refusal raises a subclass of :class:`VerificationError`:

- :class:`MissingSignatureError`: no signature (``None`` or empty);
- :class:`MalformedSignatureError`: not ``t=<digits>,v0=<hex>``;
- :class:`ExpiredSignatureError`: signed more than ``tolerance`` seconds (30 minutes) ago;
- :class:`InvalidSignatureError`: no ``v0`` matches (wrong secret or altered body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "DEFAULT_TOLERANCE",
    "ExpiredSignatureError",
    "InvalidSignatureError",
    "MalformedSignatureError",
    "MissingSignatureError",
    "VerificationError",
    "js_stringify",
    "sign",
    "verify",
]

#: How old a signature may be, in seconds.
DEFAULT_TOLERANCE = 30 * 60

_HEX = re.compile(r"[0-9a-fA-F]{64}")


class VerificationError(Exception):
    """The webhook call's signature does not prove it came from ReadMe."""


class MissingSignatureError(VerificationError):
    """The call carries no ``ReadMe-Signature``."""


class MalformedSignatureError(VerificationError):
    """The signature is not of the form ``t=<unix ms>,v0=<hex>``."""


class ExpiredSignatureError(VerificationError):
    """The signature is older than the tolerance (30 minutes)."""


class InvalidSignatureError(VerificationError):
    """The signature does not match the body and the secret."""


def _js_number(value: float) -> str:
    """A float as JavaScript's ``Number.prototype.toString`` writes it."""
    if not math.isfinite(value):
        return "null"  # JSON.stringify(NaN) === "null"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, _, exponent = text.partition("e")
    exp = int(exponent)
    if -7 < exp < 21:  # JavaScript writes these without an exponent (0.000015)
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if exp > 0 else '-'}{abs(exp)}"


def js_stringify(value: Any) -> str:
    """``JSON.stringify(value)`` for parsed JSON: compact, non-ASCII kept as is."""
    if value is None or isinstance(value, (bool, str, int)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, Mapping):
        return (
            "{"
            + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{js_stringify(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(js_stringify(v) for v in value) + "]"
    raise TypeError(f"cannot serialize {type(value).__name__} as JSON")


def _payload(body: Any) -> bytes:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return js_stringify(body).encode("utf-8", "surrogatepass")


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, (bytes, bytearray)):
        return bytes(secret)
    if not isinstance(secret, str):
        raise TypeError(f"secret must be str or bytes, not {type(secret).__name__}")
    return secret.encode("utf-8")


def _digest(timestamp: str, payload: bytes, secret: str | bytes) -> str:
    return hmac.new(_key(secret), timestamp.encode("ascii") + b"." + payload, hashlib.sha256).hexdigest()


def _parse(signature: str | bytes | None) -> tuple[str, list[str]]:
    if signature is None or not signature:
        raise MissingSignatureError("Missing Signature: the request has no ReadMe-Signature header")
    if isinstance(signature, bytes):
        signature = signature.decode("latin-1")
    if not isinstance(signature, str):
        raise MalformedSignatureError(f"Malformed Signature: expected a string, got {type(signature).__name__}")
    timestamp: str | None = None
    candidates: list[str] = []
    for element in signature.split(","):
        name, sep, value = element.partition("=")
        name, value = name.strip(), value.strip()
        if not sep:
            raise MalformedSignatureError("Malformed Signature: expected 't=<unix ms>,v0=<hex>'")
        if name == "t":
            timestamp = value
        elif name == "v0":
            candidates.append(value)
    if timestamp is None or not timestamp.isdigit() or not timestamp.isascii():
        raise MalformedSignatureError("Malformed Signature: no 't=<unix ms>' timestamp")
    if not candidates or not all(_HEX.fullmatch(c) for c in candidates):
        raise MalformedSignatureError("Malformed Signature: no 'v0=<hex HMAC-SHA256>' signature")
    return timestamp, candidates


def verify(
    body: Any,
    signature: str | bytes | None,
    secret: str | bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Return if ``signature`` proves ReadMe sent ``body``; raise a :class:`VerificationError` if not.

    ``body``: the raw request body (``bytes``/``str``, verified as sent) or the parsed
    JSON (``dict``/``list``). ``signature``: the ``ReadMe-Signature`` header.
    ``secret``: the webhook secret. ``tolerance``: the oldest accepted signature, in seconds.
    """
    timestamp, candidates = _parse(signature)
    age = time.time() - int(timestamp) / 1000
    if age > tolerance:
        raise ExpiredSignatureError(f"Expired Signature: signed {age / 60:.0f} minutes ago")
    expected = _digest(timestamp, _payload(body), secret)
    if not any(hmac.compare_digest(expected, c.lower()) for c in candidates):
        raise InvalidSignatureError("Invalid Signature: it does not match the body and the secret")


def sign(body: Any, secret: str | bytes, timestamp_ms: int | None = None) -> str:
    """A ``ReadMe-Signature`` value for ``body`` (for tests of your webhook endpoint)."""
    t = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
    return f"t={t},v0={_digest(t, _payload(body), secret)}"
