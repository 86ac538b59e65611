"""Redaction: what of a log may leave the process.

Runs on the worker thread, while the HAR entry is built (see :mod:`readme_metrics.build.har` and
:mod:`readme_metrics.build.bodies`); never on the request path. The user's manual is
``docs/redaction.md``; in short:

- ``denylist`` keys have their values replaced, whatever the value's type:
  ``"[REDACTED <length>]"`` for a string (the format of the existing SDKs),
  ``"[REDACTED]"`` for anything else (number, bool, null, object, array).
- ``allowlist`` keeps only the listed keys, at every depth; the others are removed.
- Keys match case-insensitively (Unicode case folding: ``PASSWORD``, ``Password`` and
  ``password`` are one key). When a key is in both lists the denylist wins.
- The lists apply to request and response headers, query parameters (in ``queryString``
  and in the logged ``url``/``pageref``), URL-valued headers (``Location``, ``Referer``,
  ``Content-Location``: their query, and the ``name=value`` pairs of their fragment), form
  fields (url-encoded and multipart), cookies (when sent at all), and JSON bodies at every
  depth.
- Secure by default, lists or not: the values of ``Cookie`` and ``Set-Cookie`` are
  replaced unless ``send_cookies=True``; the ``Authorization`` and ``Proxy-Authorization``
  values are sent as :func:`mask` of them (``sha512-<digest>?<last 4>``, the format of the
  group id), so callers stay correlatable without the credential leaving.
- The configured ReadMe API key never appears in a payload: any string of the log that
  contains it has it replaced (:meth:`Redactor.scrub`, applied by the delivery worker to
  a batch in which the key was found), binary bodies included.

One decision rules every key, wherever it is (header, parameter, cookie, form field, JSON
object member): :meth:`Redactor.value`.

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

from readme_metrics.config import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig

#: Replacement of a denylisted value that is not a string (and of a secret header).
REDACTED = "[REDACTED]"

#: Headers whose values are never sent unless ``send_cookies=True``.
COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})
#: Headers whose value is sent masked (hash plus last four characters), always.
MASKED_HEADERS = frozenset({"authorization", "proxy-authorization"})
#: Headers that carry a URL whose query is redacted like the request's own.
URL_HEADERS = frozenset({"location", "referer", "content-location"})

#: Headers a default rule applies to.
_RULED_HEADERS = COOKIE_HEADERS | MASKED_HEADERS | URL_HEADERS

#: An API key shorter than this is not scrubbed from every string (it would match too
#: much to mean anything: real ReadMe keys are far longer).
MIN_SCRUB_LENGTH = 8


#: What may precede a JSON document: JSON's own whitespace and a byte order mark.
_JSON_LEAD = " \t\n\r\ufeff"


def looks_json(text: str | bytes) -> bool:
    """True when ``text`` may be a JSON object or array: ``{`` or ``[`` after whitespace.

    The one test of "looks like JSON" (bodies not declared JSON, form fields, query
    parameters, multipart fields): whatever passes it is parsed and redacted as JSON.
    """
    if isinstance(text, bytes):
        text = text.lstrip(b" \t\n\r")
        if text.startswith(b"\xef\xbb\xbf"):
            text = text[3:].lstrip(b" \t\n\r")
        return text[:1] in (b"{", b"[")
    return text.lstrip(_JSON_LEAD)[:1] in ("{", "[")


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


#: What :meth:`Redactor.value` returns for a key the allowlist removes.
DROP = object()


class Redactor:
    """The denylist, the allowlist and the default secret rules of one configuration.

    ``max_body_bytes`` bounds body work on the worker (decompressed text, see
    :mod:`readme_metrics.build.bodies`); ``api_key`` is the key to scrub from every payload.
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
        self._hook = _object_hook(self)

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
        """``value`` as the lists want it for ``key``: itself (the same object), its
        replacement (:func:`redacted`), or ``DROP`` (the allowlist removes it).

        The only place the lists are applied: callers tell "kept" by identity
        (``new is value``). The denylist wins over the allowlist.
        """
        k = key.casefold()
        if k in self.deny:
            return redacted(value)
        if self.allow and k not in self.allow:
            return DROP
        return value

    # -- name/value pairs ------------------------------------------------------------

    def pairs(self, pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
        """Query parameters and form fields as HAR ``{name, value}`` lists, redacted."""
        if not self.active:
            return [{"name": name, "value": value} for name, value in pairs]
        out = []
        for name, value in pairs:
            new = self.value(name, value)
            if new is DROP:
                continue
            if new is value and looks_json(value):
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
        """A URL with its query and fragment redacted (each rebuilt from redacted pairs).

        A fragment holding ``name=value`` pairs (an OAuth implicit-flow redirect,
        ``#access_token=...&state=...``, or a client-side route ``#/cb?token=...``) is
        judged pair by pair too; ``?`` separates pairs there. A fragment without ``=`` is
        kept as written.
        """
        if not self.active:
            return url
        rest, hash_sep, fragment = url.partition("#")
        base, sep, query = rest.partition("?")
        new = base
        if sep:
            items = self.pairs(self.query(query))
            if items:
                new += "?" + encode_pairs(items)
        if hash_sep:
            if "=" not in fragment:
                new += "#" + fragment
            else:
                items = self.pairs(self.query(fragment.replace("?", "&")))
                if items:
                    new += "#" + encode_pairs(items)
        return new

    # -- headers ---------------------------------------------------------------------

    def headers(self, headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
        """Request or response headers as HAR ``{name, value}``: lists, then default rules."""
        if not self.active:
            return self._default_headers(headers)
        out = []
        deny, allow = self.deny, self.allow
        for name, value in headers:
            k = name.casefold()
            if k in deny:  # the replacement, whatever the header (the denylist wins)
                out.append({"name": name, "value": redacted(value)})
                continue
            if allow and k not in allow:
                continue
            if k in _RULED_HEADERS:
                if k in URL_HEADERS:
                    value = self.url(value)
                elif k in COOKIE_HEADERS:
                    if not self.send_cookies:
                        value = redacted(value)
                    else:
                        value = self._cookies(value, set_cookie=k == "set-cookie")
                        if not value:
                            continue
                else:
                    value = mask(value)
            out.append({"name": name, "value": value})
        return out

    def _default_headers(self, headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
        """:meth:`headers` with no list configured: the default rules only. The names they
        apply to are 6 to 19 characters long, so most names need no case folding."""
        out = []
        send_cookies = self.send_cookies
        for name, value in headers:
            if 6 <= len(name) <= 19:
                k = name.casefold()
                if k in COOKIE_HEADERS:
                    if not send_cookies:
                        value = redacted(value)
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
            if new is DROP:
                return ""
            return f"{name}{eq if new is val else '='}{new}{sep}{attributes}"
        kept = []
        for part in value.split(";"):
            name, eq, val = part.partition("=")
            new = self.value(name.strip(), val)
            if new is val:
                kept.append(part)
            elif new is not DROP:
                kept.append(f"{name}={new}")  # "token" alone: "token=[REDACTED 0]"
        return ";".join(kept)

    # -- JSON ------------------------------------------------------------------------

    def loads(self, text: str | bytes) -> Any:
        """Parse a JSON text with the lists applied at every depth, as it is parsed.

        Each object is judged by the parser's ``object_hook``, innermost first, every
        member through :meth:`value`; an object none of whose keys is listed (denylist
        only) is passed through untouched (checked in C). Raises :class:`ValueError` (not
        JSON) or :class:`RecursionError` (too deep).
        """
        return json.loads(text, object_hook=self._hook)

    def json_text(self, text: str | bytes, *, body: bool = False) -> str | None:
        """A JSON text with the lists applied, re-serialized compactly; None if it does not
        parse (or is too deep).

        A text :meth:`may_match` clears (it cannot hold a listed key) is returned as
        written, not parsed at all: there is nothing in it to redact, whether it parses or
        not.
        ``body``: the document is a whole body, so with an allowlist the values that sit
        under no key at all (scalars of a top-level array) are removed too.
        """
        if isinstance(text, str) and text[:1] == "\ufeff":
            text = text[1:]  # json.loads refuses a BOM in a str (not in bytes)
        try:
            if isinstance(text, str) and not self.may_match(text):
                return text
            doc = self.loads(text)
        except (ValueError, RecursionError):
            return None
        if body and self.allow:
            doc = _keyed_only(doc)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

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

    def query_may_change(self, query: str) -> bool:
        """False only when redaction provably leaves ``query`` as written (no list, or no
        listed key can occur in it: see :meth:`may_match`; nor ``%`` or ``+`` escapes)."""
        if not self.active:
            return False
        return bool(self.allow) or "%" in query or "+" in query or self.may_match(query)

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
        replace_strings(value, lambda text: text.replace(key, REDACTED) if key in text else None)
        return value

    def scrub_bytes(self, data: bytes) -> bytes:
        """Binary data (sent base64) without the API key in it."""
        if self.api_key is None:
            return data
        key = self.api_key.encode("utf-8")
        return data.replace(key, REDACTED.encode()) if key in data else data


def _object_hook(redactor: Redactor) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The ``object_hook`` that applies ``redactor``'s lists to each parsed JSON object."""
    deny, allow, fold, value = redactor.deny, redactor.allow, str.casefold, redactor.value

    def hook(obj: dict[str, Any]) -> dict[str, Any]:
        if not allow and deny.isdisjoint(map(fold, obj)):
            return obj  # no member can be touched
        out = {}
        for k, v in obj.items():
            new = value(k, v)
            if new is not DROP:
                out[k] = new
        return out

    return hook


def replace_strings(value: Any, new: Callable[[str], str | None]) -> None:
    """Every string in the dicts and lists of ``value`` (walked, in place) for which
    ``new`` gives a string replaced by it (None: kept)."""
    stack = [value] if isinstance(value, (dict, list)) else []
    while stack:
        node = stack.pop()
        for k, item in node.items() if type(node) is dict else enumerate(node):
            kind = type(item)
            if kind is str:
                replacement = new(item)
                if replacement is not None:
                    node[k] = replacement
            elif kind is dict or kind is list:
                stack.append(item)


def _keyed_only(doc: Any) -> Any:
    """A body's top-level arrays (nested arrays too) without their scalars: the allowlist
    keeps only values reached through listed keys, and these have no key at all."""
    if isinstance(doc, list):
        return [_keyed_only(item) for item in doc if isinstance(item, (dict, list))]
    return doc


def encode_pairs(items: Iterable[dict[str, str]]) -> str:
    """HAR ``{name, value}`` items as a query string."""
    return "&".join(f"{quote(i['name'], safe='')}={quote(i['value'], safe='')}" for i in items)
