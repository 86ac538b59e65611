"""The webhook check under its ``readme-metrics`` name (kept for compatibility).

``VerifyWebhook(body, signature, secret)`` returns quietly when the signature is good and
raises :class:`VerificationError` when it is missing, malformed, expired (older than 30
minutes) or wrong, exactly as :func:`readme_metrics.webhooks.verify` does (new code should
call that function)::

    from readme_metrics.VerifyWebhook import VerifyWebhook, VerificationError

    try:
        VerifyWebhook(request.get_json(), request.headers.get("readme-signature"), secret)
    except VerificationError as exc:
        return {"error": str(exc)}, 401

``body`` may be the parsed JSON (as before) or the raw body bytes (verified as sent).
"""

# ruff: noqa: N999 - the module keeps the existing package's name
from __future__ import annotations

from typing import Any

from readme_metrics.webhooks import VerificationError, verify

__all__ = ["VerificationError", "VerifyWebhook"]


class VerifyWebhook:
    """Constructing it verifies the signature; a bad one raises :class:`VerificationError`."""

    def __init__(self, body: Any, signature: str | bytes | None, secret: str | bytes) -> None:
        verify(body, signature, secret)
