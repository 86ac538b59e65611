"""Redaction: what of a log may leave the process.

Runs on the worker thread, while the HAR entry is built. ``denylist`` keys have their
values replaced by ``[REDACTED <length>]`` (strings) or ``[REDACTED]`` (other types);
``allowlist`` keeps only the listed keys. Keys match case-insensitively; when both lists
are given the denylist wins.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"


def redacted(value: Any) -> str:
    """The replacement text for a denylisted value."""
    if isinstance(value, str):
        return f"[REDACTED {len(value)}]"
    return REDACTED


def mask(secret: str) -> str:
    """``sha512-<base64 digest>?<last 4>``: correlatable, never the secret itself."""
    digest = base64.b64encode(hashlib.sha512(secret.encode("utf-8")).digest()).decode("ascii")
    return f"sha512-{digest}?{secret[-4:]}"


class Redactor:
    """Applies a configuration's denylist and allowlist to headers, pairs and JSON."""

    def __init__(self, denylist: Iterable[str] = (), allowlist: Iterable[str] = ()) -> None:
        self.deny = frozenset(k.lower() for k in denylist)
        self.allow = frozenset(k.lower() for k in allowlist)
        self.active = bool(self.deny or self.allow)

    def _value(self, key: str, value: Any) -> tuple[bool, Any]:
        """(keep, value) for one key."""
        k = key.lower()
        if k in self.deny:
            return True, redacted(value)
        if self.allow and k not in self.allow:
            return False, None
        return True, value

    def pairs(self, pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
        """Headers, query parameters and form fields as HAR ``{name, value}`` lists."""
        out = []
        for name, value in pairs:
            keep, value = self._value(name, value) if self.active else (True, value)
            if keep:
                out.append({"name": name, "value": value})
        return out

    def json(self, value: Any) -> Any:
        """A parsed JSON document with redaction applied at every depth."""
        if not self.active:
            return value
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                keep, new = self._value(str(key), item)
                if keep:
                    out[key] = new if str(key).lower() in self.deny else self.json(item)
            return out
        if isinstance(value, list):
            return [self.json(item) for item in value]
        return value
