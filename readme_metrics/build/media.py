"""Media types, charsets and the fail-closed markers the body builders share.

Content types are parsed by werkzeug's :func:`werkzeug.http.parse_options_header` (what
werkzeug apps read them with): a quoted parameter may hold ``;`` (``boundary="a;b"``), and
a naive split on ``;`` would read another boundary than the app's.
"""

from __future__ import annotations

import codecs
import functools

from werkzeug.http import parse_options_header

#: Text of a body that declares JSON or a form but could not be parsed, so could not be
#: redacted (only when a denylist or allowlist is configured).
UNPARSABLE = "[REDACTED BODY: could not be parsed for redaction]"
#: Same, for a body cut at ``max_body_bytes`` before it could be parsed.
TRUNCATED = "[REDACTED BODY: truncated at max_body_bytes, could not be parsed for redaction]"

_TEXT_TYPES = ("text/", "application/xml", "application/javascript", "application/x-www-form-urlencoded")


@functools.lru_cache(maxsize=256)  # an API answers with a few content types, again and again
def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """(lower-case media type, parameters with lower-case names); the dict is shared:
    read it, never change it."""
    if not content_type:
        return "", {}
    media, params = parse_options_header(content_type)
    return media.strip().lower(), {k.lower(): v for k, v in params.items() if isinstance(v, str)}


def is_json(media: str) -> bool:
    return media in ("application/json", "text/json") or media.endswith("+json")


def is_text(media: str) -> bool:
    return is_json(media) or media.startswith(_TEXT_TYPES) or media.endswith("+xml")


#: Codecs never used to read a body: ``punycode`` decodes in quadratic time (a 1 MiB body
#: would hold the worker for minutes), and neither is a charset a body is written in.
_REFUSED_CODECS = frozenset({"punycode", "idna"})


@functools.lru_cache(maxsize=64)
def text_codec(charset: str | None) -> str | None:
    """The canonical name of the codec of ``charset`` (``utf-8`` when None); None when it
    is unknown, not a text encoding, or refused."""
    if charset is None:
        return "utf-8"
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def decode(data: bytes, charset: str | None) -> str | None:
    """``data`` as text in ``charset`` (UTF-8 if None); None if it is not. A charset that
    is unknown, not a text encoding or fails is "not text": never a reason to lose a log."""
    codec = "utf-8" if charset is None else text_codec(charset)
    if codec is None:
        return None
    try:
        return data.decode(codec)
    except (ValueError, LookupError, TypeError):
        return None
