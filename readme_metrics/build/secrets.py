"""Secrets the builder must never let out whole, and text JSON cannot carry.

- :class:`CredentialMask`: what an ``Authorization`` or ``Proxy-Authorization`` value
  becomes in a log: the scheme, a user name where one is shown (Basic with a password,
  Digest), and a *keyed* hash of the whole value (HMAC-SHA256), so that callers stay
  correlatable while the logs alone allow no dictionary check of a credential.
- :func:`trim_key_prefix`: a body cut at ``max_body_bytes`` in the middle of the API key
  ends with a prefix of it; that prefix is cut off too (the whole key is scrubbed later).
- :func:`repair`: strings holding lone surrogates (``"\\ud800"``: a JSON escape, a
  ``utf-7`` body, an app's header) cannot be written as UTF-8; each is replaced by
  U+FFFD, so the log is sent rather than lost.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Any, AnyStr

#: Domain separation of the credential hash key derived from the API key.
_KEY_INFO = b"readme-metrics: Authorization hash key, v1"
#: Credentials remembered per mask (the same callers come again and again).
_CACHE_SIZE = 1024
#: What a scheme name may look like to be shown (RFC 9110 ``token``, bounded).
_SCHEME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}")
#: The user name of a Digest credential (quoted or not).
_DIGEST_USER = re.compile(r'(?:^|[\s,])username\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))', re.IGNORECASE)
#: A user name is shown only when it is this short, printable and holds no quote.
_MAX_USER = 64


def _shown_user(user: str) -> str | None:
    if not user or len(user) > _MAX_USER or not user.isprintable() or '"' in user or "\\" in user:
        return None
    return user


class CredentialMask:
    """``Authorization`` values as they are logged (see ``docs/redaction.md``).

    ``api_key``: the hash key is derived from it (HMAC-SHA256 of a fixed label), so every
    worker, process and restart of one configuration hashes a credential the same way;
    without an API key the key is random, made once per mask.
    """

    __slots__ = ("_cache", "_key")

    def __init__(self, api_key: str | None) -> None:
        if api_key:
            self._key = hmac.new(api_key.encode("utf-8", "surrogatepass"), _KEY_INFO, hashlib.sha256).digest()
        else:
            self._key = os.urandom(32)
        self._cache: dict[str, str] = {}

    def digest(self, value: str) -> str:
        """``hmac-sha256:<first 16 bytes, base64url>`` of ``value``."""
        raw = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()[:16]
        return "hmac-sha256:" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def __call__(self, value: str) -> str:
        masked = self._cache.get(value)
        if masked is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            masked = self._cache[value] = self._mask(value)
        return masked

    def _mask(self, value: str) -> str:
        digest = self.digest(value)
        scheme, sep, rest = value.strip().partition(" ")
        if not sep or not _SCHEME.fullmatch(scheme):
            return digest  # a bare credential: nothing but its hash
        kind = scheme.lower()
        user = None
        if kind == "basic":
            user = _basic_user(rest.strip())
        elif kind == "digest":
            found = _DIGEST_USER.search(rest)
            if found:
                user = _shown_user(found.group(1) if found.group(1) is not None else found.group(2))
        shown = f' user="{user}"' if user is not None else ""
        return f"{scheme}{shown} {digest}"


def _basic_user(token: str) -> str | None:
    """The user name of a Basic credential when it has a password (without one, the user
    name is the secret: an API key sent as ``key:``); None when it is not to be shown."""
    try:
        decoded = base64.b64decode(token, validate=True)
    except ValueError:
        return None
    user, colon, password = decoded.partition(b":")
    if not colon or not password:
        return None
    try:
        return _shown_user(user.decode("utf-8"))
    except UnicodeDecodeError:
        return None


#: A prefix of the API key shorter than this may end a cut body: the group id already
#: shows four characters of a key (its last four, ``docs/protocol.md``).
MIN_PREFIX = 4


def trim_key_prefix(data: AnyStr, key: AnyStr) -> AnyStr:
    """``data`` (a body, or an error message, cut short) without a tail that is a prefix
    of ``key`` of at least :data:`MIN_PREFIX` bytes (characters): the cut fell inside it."""
    for size in range(min(len(key) - 1, len(data)), MIN_PREFIX - 1, -1):
        if data.endswith(key[:size]):
            return data[:-size]
    return data


_SURROGATE = re.compile("[\ud800-\udfff]")
#: What replaces each lone surrogate.
REPLACEMENT = "\ufffd"


def _fix(text: str) -> str | None:
    if text.isascii():
        return None
    fixed = _SURROGATE.sub(REPLACEMENT, text)
    return fixed if fixed != text else None


def repair(value: Any) -> int:
    """Replace every lone surrogate in the strings (values and keys) of the dicts and
    lists of ``value``, in place, by U+FFFD; how many strings changed."""
    changed = 0
    stack = [value] if isinstance(value, (dict, list)) else []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if any(type(k) is str and _fix(k) is not None for k in node):
                items = list(node.items())
                node.clear()
                for k, v in items:
                    new = _fix(k) if type(k) is str else None
                    changed += new is not None
                    node[k if new is None else new] = v
            pairs: Any = node.items()
        else:
            pairs = enumerate(node)
        for k, item in list(pairs):
            if isinstance(item, str):
                new = _fix(item)
                if new is not None:
                    node[k] = new
                    changed += 1
            elif isinstance(item, (dict, list)):
                stack.append(item)
    return changed


def repaired_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD."""
    fixed = _fix(text)
    return text if fixed is None else fixed
