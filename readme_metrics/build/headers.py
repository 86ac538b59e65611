"""Headers: the lists, then the default secret rules, in one pass per message.

- A denylisted header, or (with an allowlist) a header not listed, keeps its name and has
  its value replaced (``[REDACTED <length>]``), as readme-metrics 3.4.0 does.
- ``Cookie`` and ``Set-Cookie``: replaced unless ``send_cookies=True``; then each cookie
  is judged by its name.
- ``Authorization`` and ``Proxy-Authorization``: the scheme, a user name at most, and a
  keyed hash (:class:`~readme_metrics.build.secrets.CredentialMask`), always.
- ``Location``, ``Referer``, ``Content-Location``: their query and fragment pairs redacted.
"""

from __future__ import annotations

from collections.abc import Iterable

from readme_metrics.build.redaction import Redactor, redacted

#: Headers whose values are never sent unless ``send_cookies=True``.
COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})
#: Headers whose value is sent masked (scheme, user name at most, keyed hash), always.
MASKED_HEADERS = frozenset({"authorization", "proxy-authorization"})
#: Headers that carry a URL whose query is redacted like the request's own.
URL_HEADERS = frozenset({"location", "referer", "content-location"})

#: Headers a default rule applies to.
_RULED_HEADERS = COOKIE_HEADERS | MASKED_HEADERS | URL_HEADERS


def redact_headers(redactor: Redactor, headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """Request or response headers as HAR ``{name, value}``: lists, then default rules."""
    if not redactor.active:
        return _default_headers(redactor, headers)
    out = []
    deny, allow = redactor.deny, redactor.allow
    for name, value in headers:
        k = name.casefold()
        if k in deny or (allow and k not in allow):  # the replacement, whatever the header
            out.append({"name": name, "value": redacted(value)})
            continue
        if k in _RULED_HEADERS:
            if k in URL_HEADERS:
                value = redactor.url(value)
            elif k in COOKIE_HEADERS:
                if not redactor.send_cookies:
                    value = redacted(value)
                else:
                    value = _cookies(redactor, value, set_cookie=k == "set-cookie")
            else:
                value = redactor.credential(value)
        out.append({"name": name, "value": value})
    return out


def _default_headers(redactor: Redactor, headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """:func:`redact_headers` with no list configured: the default rules only. The names
    they apply to are 6 to 19 characters long, so most names need no case folding."""
    out = []
    send_cookies, credential = redactor.send_cookies, redactor.credential
    for name, value in headers:
        if 6 <= len(name) <= 19:
            k = name.casefold()
            if k in COOKIE_HEADERS:
                if not send_cookies:
                    value = redacted(value)
            elif k in MASKED_HEADERS:
                value = credential(value)
        out.append({"name": name, "value": value})
    return out


def _cookies(redactor: Redactor, value: str, *, set_cookie: bool) -> str:
    """A ``Cookie`` (or ``Set-Cookie``) value with each cookie judged by its name."""
    if set_cookie:
        # name=value; Attr; Attr=x — only the first pair is the cookie.
        first, sep, attributes = value.partition(";")
        name, eq, val = first.partition("=")
        new = redactor.param(name.strip(), val)
        return f"{name}{eq if new is val else '='}{new}{sep}{attributes}"
    kept = []
    for part in value.split(";"):
        name, eq, val = part.partition("=")
        new = redactor.param(name.strip(), val)
        kept.append(part if new is val else f"{name}={new}")  # "token" alone: "token=[REDACTED 0]"
    return ";".join(kept)
