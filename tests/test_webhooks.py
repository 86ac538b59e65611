"""Webhook signature verification: ``webhooks.verify`` and the compatible ``VerifyWebhook``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from readme_metrics import webhooks
from readme_metrics.VerifyWebhook import VerificationError, VerifyWebhook
from readme_metrics.webhooks import (
    ExpiredSignatureError,
    InvalidSignatureError,
    MalformedSignatureError,
    MissingSignatureError,
    js_stringify,
    sign,
    verify,
)

SECRET = "rdme_whsec_test"
BODY = {"email": "zoë@example.test", "name": "Zoë Čapek 日本", "n": 1.0, "ok": True, "x": None}


def reference_signature(raw: bytes, secret: str, t_ms: int) -> str:
    """The signature computed straight from the spec: HMAC-SHA256 over '<t>.<body>'."""
    digest = hmac.new(secret.encode(), f"{t_ms}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t_ms},v0={digest}"


def now_ms() -> int:
    return int(time.time() * 1000)


# What JavaScript's JSON.stringify(BODY) gives: compact, non-ASCII kept, 1.0 written as 1.
JS_TEXT = '{"email":"zoë@example.test","name":"Zoë Čapek 日本","n":1,"ok":true,"x":null}'


def test_stringify_matches_javascript() -> None:
    assert js_stringify(BODY) == JS_TEXT
    assert (
        js_stringify({"a": [1, 2.5, 1e-7, 1.5e-5, 1e21, '\n"q"']}) == '{"a":[1,2.5,1e-7,0.000015,1e+21,"\\n\\"q\\""]}'
    )


@pytest.mark.parametrize("form", ["dict", "str", "bytes", "bytearray"])
def test_good_signature_every_body_form(form: str) -> None:
    raw = JS_TEXT.encode("utf-8")
    signature = reference_signature(raw, SECRET, now_ms())
    body = {"dict": BODY, "str": JS_TEXT, "bytes": raw, "bytearray": bytearray(raw)}[form]
    verify(body, signature, SECRET)
    VerifyWebhook(body, signature, SECRET)


def test_raw_bytes_verified_as_sent() -> None:
    # Spaces and key order that re-serializing would not reproduce: only the raw form verifies.
    raw = '{ "b": 1,  "a": "é" }'.encode()
    signature = reference_signature(raw, SECRET, now_ms())
    verify(raw, signature, SECRET)
    with pytest.raises(InvalidSignatureError):
        verify(json.loads(raw), signature, SECRET)


def test_bytes_secret_and_header_bytes() -> None:
    raw = b'{"a":1}'
    signature = reference_signature(raw, SECRET, now_ms())
    verify(raw, signature.encode(), SECRET.encode())


@pytest.mark.parametrize("signature", [None, ""])
def test_missing(signature: str | None) -> None:
    with pytest.raises(MissingSignatureError, match="Missing Signature"):
        verify(BODY, signature, SECRET)


@pytest.mark.parametrize(
    "signature",
    ["garbage", "t=abc,v0=" + "0" * 64, "v0=" + "0" * 64, "t=123", "t=123,v0=nothex", "t=1,v0=" + "0" * 63],
)
def test_malformed(signature: str) -> None:
    with pytest.raises(MalformedSignatureError, match="Malformed Signature"):
        verify(BODY, signature, SECRET)


def test_expired() -> None:
    t = now_ms() - 31 * 60 * 1000
    with pytest.raises(ExpiredSignatureError, match="Expired Signature"):
        verify(BODY, sign(BODY, SECRET, t), SECRET)
    # 29 minutes old is still good.
    verify(BODY, sign(BODY, SECRET, now_ms() - 29 * 60 * 1000), SECRET)


def test_wrong_secret_and_altered_body() -> None:
    signature = sign(BODY, SECRET)
    with pytest.raises(InvalidSignatureError, match="Invalid Signature"):
        verify(BODY, signature, "another-secret")
    with pytest.raises(InvalidSignatureError):
        verify({**BODY, "email": "mallory@example.test"}, signature, SECRET)


def test_every_error_is_a_verification_error() -> None:
    for cls in (MissingSignatureError, MalformedSignatureError, ExpiredSignatureError, InvalidSignatureError):
        assert issubclass(cls, VerificationError)
    assert VerificationError is webhooks.VerificationError
    with pytest.raises(VerificationError):
        VerifyWebhook(BODY, "t=1,v0=" + "0" * 64, SECRET)


def test_several_v0_one_good() -> None:
    good = sign(BODY, SECRET)
    t, v0 = good.split(",")
    verify(BODY, f"{t},v0={'0' * 64},{v0}", SECRET)
