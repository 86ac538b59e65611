"""Who may read the dashboard, its JSON API and ``/metrics``.

Bound to a loopback address the collector is a local tool: those routes are open (the
``Host`` rule of :mod:`.guard` keeps other sites' pages out). Bound to any other address
they need a credential from the configuration, one of:

- a token (``--token`` / ``README_METRICS_TOKEN``), sent as ``Authorization: Bearer <token>``
  (Prometheus' ``authorization`` setting), or as the password of HTTP Basic credentials
  with any user name (what a browser can send);
- HTTP Basic credentials (``--basic-auth user:password`` / ``README_METRICS_BASIC_AUTH``).

Both are compared in constant time (:func:`hmac.compare_digest`). Without either, the
collector refuses to start on a non-loopback address (:func:`check_bind`). The ingest
routes (``POST /v1/request``, ``GET /v1``) keep their API-key rule.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from readme_metrics.collector.errors import HttpError
from readme_metrics.collector.guard import is_loopback


@dataclass(frozen=True)
class Credentials:
    """The configured credentials (``None``: not configured)."""

    token: str | None = None
    basic: str | None = None  # "user:password"

    @classmethod
    def of(cls, token: str | None, basic: str | None) -> Credentials:
        if basic is not None and ":" not in basic:
            raise ValueError("basic auth must be given as user:password")
        if token is not None and not token.strip():
            raise ValueError("the token must not be empty")
        return cls(token or None, basic or None)

    def __bool__(self) -> bool:
        return bool(self.token or self.basic)

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries one of the configured credentials."""
        scheme, _, value = (authorization or "").strip().partition(" ")
        value = value.strip()
        scheme = scheme.lower()
        if scheme == "bearer" and self.token:
            try:  # header text is the bytes as latin-1; a token is sent UTF-8 encoded
                sent = value.encode("latin-1")
            except UnicodeEncodeError:
                return False
            return hmac.compare_digest(sent, self.token.encode("utf-8"))
        if scheme != "basic" or not value:
            return False
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        ok = False
        if self.basic:
            ok |= hmac.compare_digest(decoded, self.basic.encode())
        if self.token:
            ok |= hmac.compare_digest(decoded.partition(b":")[2], self.token.encode())
        return ok


def credential_required(bind_host: str) -> bool:
    """The decision: a credential is needed on any address but a loopback one."""
    return not is_loopback(bind_host)


def check_bind(bind_host: str, credentials: Credentials) -> None:
    """``ValueError`` saying why, for a non-loopback address without a credential."""
    if credential_required(bind_host) and not credentials:
        raise ValueError(
            f"refusing to serve the dashboard on {bind_host}, a non-loopback address, without a credential: "
            "logs can hold personal data. Give --token TOKEN (or README_METRICS_TOKEN) or --basic-auth "
            "USER:PASSWORD (or README_METRICS_BASIC_AUTH), or bind to 127.0.0.1."
        )


def check_access(required: bool, credentials: Credentials, authorization: str | None) -> None:
    """401 unless access is open or ``authorization`` carries a configured credential."""
    if not required:
        return
    if not credentials:  # reached on a non-loopback address without configuration
        raise HttpError(403, "this collector has no credential configured for non-loopback access")
    if not credentials.accepts(authorization):
        challenge = {"WWW-Authenticate": 'Basic realm="readme-metrics collector"'}
        raise HttpError(401, "this route needs the collector's token or basic credentials", challenge)
