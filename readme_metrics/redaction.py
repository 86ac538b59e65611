"""Redaction: what of a log may leave the process.

Runs on the worker thread, while the HAR entry is built (see :mod:`readme_metrics.har` and
:mod:`readme_metrics.bodies`); never on the request path. The user's manual is
``docs/redaction.md``; in short:

- ``denylist`` keys have their values replaced, whatever the value's type:
  ``"[REDACTED <length>]"`` for a string (the format of the existing SDKs),
  ``"[REDACTED]"`` for anything else (number, bool, null, object, array).
- ``allowlist`` keeps only the listed keys, at every depth; the others are removed.
- Keys match case-insensitively (Unicode case folding: ``PASSWORD``, ``Password`` and
  ``password`` are one key). When a key is in both lists the denylist wins.
- The lists apply to request and response headers, query parameters (in ``queryString``
  and in the logged ``url``/``pageref``), URL-valued headers (``Location``, ``Referer``,
  ``Content-Location``: their query), form fields (url-encoded and multipart), cookies
  (when sent at all), and JSON bodies at every depth.
- Secure by default, lists or not: the values of ``Cookie``, ``Set-Cookie`` and
  ``Proxy-Authorization`` are replaced unless ``send_cookies=True``; the ``Authorization``
  value is sent as :func:`mask` of it (``sha512-<digest>?<last 4>``, the format of the
  group id), so callers stay correlatable without the credential leaving.
- The configured ReadMe API key never appears in a payload: any string of the log that
  contains it has it replaced (:meth:`Redactor.scrub`), binary bodies included.

A :class:`Redactor` is built once per configuration (:meth:`Redactor.from_config`); every
set it matches against is computed then. With no list configured it does only the cheap
default header rules and the API key scrub.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig

#: Replacement of a denylisted value that is not a string (and of a secret header).
REDACTED = "[REDACTED]"

#: Headers whose values are never sent unless ``send_cookies=True``.
COOKIE_HEADERS = frozenset({"cookie", "set-cookie", "proxy-authorization"})
#: Headers whose value is sent masked (hash plus last four characters).
MASKED_HEADERS = frozenset({"authorization"})
#: Headers that carry a URL whose query is redacted like the request's own.
URL_HEADERS = frozenset({"location", "referer", "content-location"})

#: An API key shorter than this is not scrubbed from every string (it would match too
#: much to mean anything: real ReadMe keys are far longer).
MIN_SCRUB_LENGTH = 8

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def redacted(value: Any) -> str:
    """The replacement text of a denylisted value."""
    if isinstance(value, str):
        return f"[REDACTED {len(value)}]"
    return REDACTED


@functools.lru_cache(maxsize=1024)  # the same callers' keys come again and again
def mask(secret: str) -> str:
    """``sha512-<base64 digest>?<last 4>``: correlatable, never the secret itself."""
    digest = base64.b64encode(hashlib.sha512(secret.encode("utf-8")).digest()).decode("ascii")
    return f"sha512-{digest}?{secret[-4:]}"


_DROP = object()


class Redactor:
    """The denylist, the allowlist and the default secret rules of one configuration.

    ``max_body_bytes`` bounds body work on the worker (decompressed text, see
    :mod:`readme_metrics.bodies`); ``api_key`` is the key to scrub from every payload.
    """

    __slots__ = ("_hook", "active", "allow", "api_key", "deny", "max_body_bytes", "send_cookies")

    def __init__(
        self,
        denylist: Iterable[str] = (),
        allowlist: Iterable[str] = (),
        *,
        send_cookies: bool = False,
        api_key: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.deny = frozenset(k.casefold() for k in denylist)
        self.allow = frozenset(k.casefold() for k in allowlist)
        #: True when a list is configured (bodies and parameters must then be parsed).
        self.active = bool(self.deny or self.allow)
        self.send_cookies = send_cookies
        self.api_key = api_key if api_key and len(api_key) >= MIN_SCRUB_LENGTH else None
        self.max_body_bytes = max_body_bytes
        self._hook = self._object_hook()

    @classmethod
    def from_config(cls, config: MetricsApiConfig) -> Redactor:
        return cls(
            config.denylist,
            config.allowlist,
            send_cookies=config.send_cookies,
            api_key=config.api_key,
            max_body_bytes=config.max_body_bytes,
        )

    # -- one key ---------------------------------------------------------------------

    def value(self, key: str, value: Any) -> Any:
        """``value`` as the lists want it for ``key``: itself, its replacement, or ``_DROP``."""
        k = key.casefold()
        if k in self.deny:
            return redacted(value)
        if self.allow and k not in self.allow:
            return _DROP
        return value

    def denied(self, key: str) -> bool:
        return key.casefold() in self.deny

    def dropped(self, key: str) -> bool:
        """True when the allowlist removes ``key`` (and the denylist does not redact it)."""
        if not self.allow:
            return False
        k = key.casefold()
        return k not in self.allow and k not in self.deny

    # -- name/value pairs ------------------------------------------------------------

    def pairs(self, pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
        """Query parameters and form fields as HAR ``{name, value}`` lists, redacted."""
        if not self.active:
            return [{"name": name, "value": value} for name, value in pairs]
        out = []
        for name, value in pairs:
            new = self.value(name, value)
            if new is _DROP:
                continue
            if new is value and value[:1] in ("{", "["):
                # A JSON document in a parameter is redacted at every depth too.
                doc = self.json_text(value)
                if doc is not None:
                    new = doc
            out.append({"name": name, "value": new})
        return out

    def query(self, query: str) -> list[tuple[str, str]]:
        """A query string (or url-encoded form) as name/value pairs, blank values kept.

        When a list is configured ``;`` separates pairs too (some servers read it so): a
        denylisted name hidden behind a ``;`` is still found.
        """
        if self.active and ";" in query:
            query = query.replace(";", "&")
        return parse_qsl(query, keep_blank_values=True)

    def url(self, url: str) -> str:
        """A URL with its query redacted (the query rebuilt from the redacted pairs)."""
        if not self.active:
            return url
        base, sep, rest = url.partition("?")
        if not sep:
            return url
        query, hash_sep, fragment = rest.partition("#")
        items = self.pairs(self.query(query))
        new = base + ("?" + encode_pairs(items) if items else "")
        # A fragment is never sent to a server; one in a Location header is kept only if
        # it holds no name=value pair the lists would have to judge.
        if hash_sep and "=" not in fragment:
            new += "#" + fragment
        return new

    # -- headers ---------------------------------------------------------------------

    def headers(self, headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
        """Request or response headers as HAR ``{name, value}``: lists, then default rules."""
        out = []
        active = self.active
        for name, value in headers:
            k = name.casefold()
            if active:
                if k in self.deny:
                    out.append({"name": name, "value": redacted(value)})
                    continue
                if self.allow and k not in self.allow:
                    continue
                if k in URL_HEADERS:
                    value = self.url(value)
            if k in COOKIE_HEADERS:
                if not self.send_cookies:
                    value = redacted(value)
                elif active and k != "proxy-authorization":
                    value = self._cookies(value, set_cookie=k == "set-cookie")
                    if not value:
                        continue
            elif k in MASKED_HEADERS:
                value = mask(value)
            out.append({"name": name, "value": value})
        return out

    def _cookies(self, value: str, *, set_cookie: bool) -> str:
        """A ``Cookie`` (or ``Set-Cookie``) value with each cookie judged by its name."""
        if set_cookie:
            # name=value; Attr; Attr=x — only the first pair is the cookie.
            first, sep, attributes = value.partition(";")
            name, eq, val = first.partition("=")
            new = self.value(name.strip(), val)
            if new is _DROP:
                return ""
            return f"{name}{eq}{new}{sep}{attributes}"
        kept = []
        for part in value.split(";"):
            name, eq, val = part.partition("=")
            new = self.value(name.strip(), val)
            if new is not _DROP:
                kept.append(f"{name}{eq}{new}")
        return ";".join(kept)

    # -- JSON ------------------------------------------------------------------------

    def json(self, value: Any) -> Any:
        """A parsed JSON document with the lists applied at every depth.

        May raise :class:`RecursionError` on a pathologically deep document; callers
        treat that as "cannot be redacted" (see :mod:`readme_metrics.bodies`).
        """
        if not self.active:
            return value
        return self._json(value)

    def _json(self, value: Any) -> Any:
        if isinstance(value, dict):
            deny, allow = self.deny, self.allow
            out = {}
            for key, item in value.items():
                k = str(key).casefold()
                if k in deny:
                    out[key] = redacted(item)
                elif allow and k not in allow:
                    continue
                elif isinstance(item, (dict, list)):
                    out[key] = self._json(item)
                else:
                    out[key] = item
            return out
        if isinstance(value, list):
            return [self._json(item) if isinstance(item, (dict, list)) else item for item in value]
        return value

    def loads(self, text: str | bytes) -> Any:
        """Parse a JSON text with the lists applied at every depth, as it is parsed.

        Each object is judged by the parser's ``object_hook``, innermost first; an object
        none of whose keys is listed is passed through untouched (checked in C). Raises
        :class:`ValueError` (not JSON) or :class:`RecursionError` (too deep).
        """
        return json.loads(text, object_hook=self._hook)

    def _object_hook(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        deny, allow, fold = self.deny, self.allow, str.casefold

        def deny_only(obj: dict[str, Any]) -> dict[str, Any]:
            if deny.isdisjoint(map(fold, obj)):
                return obj
            return {k: redacted(v) if fold(k) in deny else v for k, v in obj.items()}

        def with_allow(obj: dict[str, Any]) -> dict[str, Any]:
            out = {}
            for k, v in obj.items():
                f = fold(k)
                if f in deny:
                    out[k] = redacted(v)
                elif f in allow:
                    out[k] = v
            return out

        return with_allow if allow else deny_only

    def json_text(self, text: str | bytes) -> str | None:
        """A JSON text with the lists applied, re-serialized compactly; None if it does not
        parse (or is too deep). A text :meth:`may_match` clears is returned as written."""
        try:
            if isinstance(text, str) and not self.may_match(text):
                json.loads(text)
                return text
            return json.dumps(self.loads(text), ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError):
            return None

    def may_match(self, text: str) -> bool:
        """False only when a JSON text provably holds no denylisted key.

        Cheap pre-check that spares re-serializing documents the denylist cannot touch:
        an ASCII text without escapes in which no denylisted key occurs (case folded).
        Always True when an allowlist is configured.
        """
        if self.allow or not text.isascii() or "\\" in text:
            return True
        low = text.lower()
        return any(k in low for k in self.deny)

    # -- the API key -----------------------------------------------------------------

    def scrub(self, value: Any) -> Any:
        """Every string in ``value`` (dicts and lists walked, in place) without the API key.

        Applied to the finished log, so whatever decoding produced a string (percent
        escapes, JSON escapes, charsets, decompression), the key cannot survive in it.
        """
        key = self.api_key
        if key is None:
            return value
        if isinstance(value, str):
            return value.replace(key, REDACTED) if key in value else value
        stack = [value] if isinstance(value, (dict, list)) else []
        while stack:
            node = stack.pop()
            for k, item in node.items() if type(node) is dict else enumerate(node):
                kind = type(item)
                if kind is str:
                    if key in item:
                        node[k] = item.replace(key, REDACTED)
                elif kind is dict or kind is list:
                    stack.append(item)
        return value

    def scrub_bytes(self, data: bytes) -> bytes:
        """Binary data (sent base64) without the API key in it."""
        if self.api_key is None:
            return data
        key = self.api_key.encode("utf-8")
        return data.replace(key, REDACTED.encode()) if key in data else data


def encode_pairs(items: Iterable[dict[str, str]]) -> str:
    """HAR ``{name, value}`` items as a query string."""
    return "&".join(f"{quote(i['name'], safe='')}={quote(i['value'], safe='')}" for i in items)
