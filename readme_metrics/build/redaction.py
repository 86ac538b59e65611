"""Redaction: what of a log may leave the process.

Runs on the worker thread, while the HAR entry is built (see :mod:`readme_metrics.build.har` and
:mod:`readme_metrics.build.bodies`); never on the request path. The user's manual is
``docs/redaction.md``; in short:

- ``denylist`` keys have their values replaced, whatever the value's type:
  ``"[REDACTED <length>]"`` for a string (the format of the existing SDKs),
  ``"[REDACTED]"`` for anything else (number, bool, null, object, array).
- ``allowlist``: the values of keys not listed are replaced the same way (their keys are
  kept, as readme-metrics 3.4.0 does), at every depth.
- Keys match case-insensitively (Unicode case folding: ``PASSWORD``, ``Password`` and
  ``password`` are one key). When a key is in both lists the denylist wins.
- The lists apply to request and response headers, query parameters (in ``queryString``
  and in the logged ``url``/``pageref``), URL-valued headers (``Location``, ``Referer``,
  ``Content-Location``: their query, and the ``name=value`` pairs of their fragment), form
  fields (url-encoded and multipart), cookies (when sent at all), and JSON bodies at every
  depth.
- Secure by default, lists or not: the values of ``Cookie`` and ``Set-Cookie`` are
  replaced unless ``send_cookies=True``; the ``Authorization`` and ``Proxy-Authorization``
  values are sent as their scheme, a user name at most, and a keyed hash
  (:class:`~readme_metrics.build.secrets.CredentialMask`), so callers stay correlatable
  without any part of the credential leaving.
- Parameter names are judged by every key they carry: ``user[password]``, ``password[]``
  and ``a[b][password]`` (Rails, PHP, qs) by each bracketed key too.
- The configured ReadMe API key never appears in a payload: any string of the log that
  contains it has it replaced (:meth:`Redactor.scrub`, applied by the delivery worker to
  a batch in which the key was found), binary bodies included.

One decision rules every key, wherever it is (header, parameter, cookie, form field, JSON
object member): :meth:`Redactor.value` (inlined in the JSON object hook, which runs for
every member; :meth:`Redactor.param` for parameter names that are paths). Headers are in
:mod:`readme_metrics.build.headers`.

A :class:`Redactor` is built once per configuration (:meth:`Redactor.from_config`); every
set it matches against is computed then. With no list configured it does only the cheap
default header rules and the API key scrub.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from readme_metrics.build.secrets import CredentialMask, repaired_text
from readme_metrics.config import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig

#: Replacement of a denylisted value that is not a string (and of a secret header).
REDACTED = "[REDACTED]"

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


#: ``[REDACTED <n>]`` made once for the usual lengths (an allowlist replaces many values).
_BY_LENGTH = tuple(f"[REDACTED {n}]" for n in range(256))


def redacted(value: Any) -> str:
    """The replacement text of a denylisted value."""
    if isinstance(value, str):
        n = len(value)
        return _BY_LENGTH[n] if n < 256 else f"[REDACTED {n}]"
    return REDACTED


@functools.lru_cache(maxsize=1024)  # the same callers' keys come again and again
def mask(secret: str) -> str:
    """``sha512-<base64 digest>?<last 4>``: correlatable, never the secret itself."""
    digest = base64.b64encode(hashlib.sha512(secret.encode("utf-8", "surrogatepass")).digest()).decode("ascii")
    return f"sha512-{digest}?{secret[-4:]}"


#: What separates the keys of a parameter name that is a path (``a[b][c]``, ``p[]``).
_BRACKETS = re.compile(r"[\[\]]+")


class Redactor:
    """The denylist, the allowlist and the default secret rules of one configuration.

    ``max_body_bytes`` bounds body work on the worker (decompressed text, see
    :mod:`readme_metrics.build.bodies`); ``api_key`` is the key to scrub from every payload.
    """

    __slots__ = (
        "_hook",
        "active",
        "allow",
        "api_key",
        "credential",
        "deny",
        "key_bytes",
        "max_body_bytes",
        "send_cookies",
    )

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
        #: The API key's UTF-8 bytes (a body cut inside it loses the prefix, see bodies).
        self.key_bytes = self.api_key.encode("utf-8", "surrogatepass") if self.api_key else None
        #: What an ``Authorization`` value becomes (its hash keyed from the API key).
        self.credential = CredentialMask(api_key)
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
        """``value`` as the lists want it for ``key``: itself (the same object) or its
        replacement (:func:`redacted`: a denylisted key, or a key the allowlist does not
        list, which is kept with its value replaced).

        The only place the lists are applied: callers tell "kept" by identity
        (``new is value``). The denylist wins over the allowlist.
        """
        k = key.casefold()
        if k in self.deny or (self.allow and k not in self.allow):
            return redacted(value)
        return value

    def param(self, name: str, value: Any) -> Any:
        """:meth:`value` for a parameter (query, form field, multipart field, cookie) whose
        name may be a path, as Rails, PHP and qs read ``user[password]``, ``password[]``,
        ``a[b][password]``: denylisted if any of its keys is; with an allowlist, kept only
        when the whole name, or each of its keys, is listed."""
        if "[" not in name:
            return self.value(name, value)
        k = name.casefold()
        keys = [key.casefold() for key in _BRACKETS.split(name) if key]
        if k in self.deny or not self.deny.isdisjoint(keys):
            return redacted(value)
        if self.allow and k not in self.allow and not self.allow.issuperset(keys):
            return redacted(value)
        return value

    def names_value(self, names: list[str], value: Any) -> Any:
        """:meth:`param` for a value an app may read under any of ``names``: replaced if
        any name would have it replaced."""
        for name in names:
            new = self.param(name, value)
            if new is not value:
                return new
        return value

    # -- name/value pairs ------------------------------------------------------------

    def pairs(self, pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
        """Query parameters and form fields as HAR ``{name, value}`` lists, redacted."""
        if not self.active:
            return [{"name": name, "value": value} for name, value in pairs]
        out = []
        for name, value in pairs:
            new = self.param(name, value)
            if new is value and looks_json(value):
                # A JSON document in a parameter is redacted at every depth too.
                doc = self.json_text(value)
                if doc is not None:
                    new = doc
            out.append({"name": name, "value": new})
        return out

    def query(self, query: str, encoding: str = "utf-8") -> list[tuple[str, str]]:
        """A query string (or url-encoded form) as name/value pairs, blank values kept
        (``encoding``: of the percent escapes).

        When a list is configured ``;`` separates pairs too (some servers read it so): a
        denylisted name hidden behind a ``;`` is still found.
        """
        if self.active and ";" in query:
            query = query.replace(";", "&")
        return parse_qsl(query, keep_blank_values=True, encoding=encoding, errors="replace")

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
            new += self.fragment(fragment)
        return new

    def fragment(self, fragment: str) -> str:
        """``#`` and a URL's fragment, its ``name=value`` pairs redacted (``""`` when
        none is left); kept as written when it holds no ``=`` or no list is configured."""
        if not self.active or "=" not in fragment:
            return "#" + fragment
        items = self.pairs(self.query(fragment.replace("?", "&")))
        return "#" + encode_pairs(items) if items else ""

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
        under no key at all (scalars of a top-level array) are replaced too.

        A string value that is itself a JSON text (``"{\\"password\\": ...}"``) is judged
        by the keys it carries, at every depth (such a string needs a backslash escape, so
        only texts holding one are searched).
        """
        if isinstance(text, str) and text[:1] == "\ufeff":
            text = text[1:]  # json.loads refuses a BOM in a str (not in bytes)
        try:
            if isinstance(text, str) and not self.may_match(text):
                return text
            doc = self.loads(text)
        except (ValueError, RecursionError):
            return None
        if "\\" in text if isinstance(text, str) else b"\\" in text:
            doc = self._inner_json(doc)
        if body and self.allow:
            doc = _keyed_only(doc)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    def _inner_json(self, doc: Any) -> Any:
        """``doc`` with each string that is a JSON text replaced by its redacted text."""

        def inner(text: str) -> str | None:
            if not looks_json(text):
                return None
            new = self.json_text(text)
            return new if new is not None and new != text else None

        if isinstance(doc, str):
            return inner(doc) or doc
        replace_strings(doc, inner)
        return doc

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
    """The ``object_hook`` that applies ``redactor``'s lists to each parsed JSON object
    (:meth:`Redactor.value`, inlined: it runs for every member of every object)."""
    deny, allow, fold = redactor.deny, redactor.allow, str.casefold

    def hook(obj: dict[str, Any]) -> dict[str, Any]:
        if not allow:
            if deny.isdisjoint(map(fold, obj)):
                return obj  # no member can be touched
            return {k: redacted(v) if fold(k) in deny else v for k, v in obj.items()}
        out = {}
        for k, v in obj.items():
            f = fold(k)
            if f in deny or f not in allow:
                out[k] = (_BY_LENGTH[len(v)] if len(v) < 256 else redacted(v)) if type(v) is str else REDACTED
            else:
                out[k] = v
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
    """A body's top-level arrays (nested arrays too) with their scalars replaced: the
    allowlist keeps only values reached through listed keys, and these have no key."""
    if isinstance(doc, list):
        return [_keyed_only(item) if isinstance(item, (dict, list)) else redacted(item) for item in doc]
    return doc


def encode_pairs(items: Iterable[dict[str, str]]) -> str:
    """HAR ``{name, value}`` items as a query string (a lone surrogate, which UTF-8
    cannot hold, as the escapes of U+FFFD: the log's repair shows it so)."""
    try:
        return "&".join(f"{quote(i['name'], safe='')}={quote(i['value'], safe='')}" for i in items)
    except UnicodeEncodeError:
        return "&".join(
            f"{quote(repaired_text(i['name']), safe='')}={quote(repaired_text(i['value']), safe='')}" for i in items
        )
