"""``application/x-www-form-urlencoded`` bodies as name/value pairs, read as apps read them.

Frameworks decode a form differently: werkzeug as UTF-8 (a body that is not UTF-8 gives no
form), Starlette its bytes as latin-1 (percent escapes as UTF-8), Django in the charset
the ``Content-Type`` declares (percent escapes too). A form whose bytes are ASCII in an
ASCII-compatible charset (nearly every form) reads the same everywhere and is parsed once.
Any other is parsed in each of these readings: when their names disagree and one of them
holds a name the lists act on, the form fails closed (:data:`UNPARSABLE`), since the app may
read the secret under a name the log would not redact.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from readme_metrics.build.media import text_codec
from readme_metrics.build.redaction import Redactor

#: Charsets that read every ASCII byte (and percent escape) as UTF-8 does.
_PLAIN = frozenset({"utf-8", "ascii"})


def _readings(data: bytes, charset: str | None) -> list[tuple[str, str]]:
    """(raw text decoding, percent-escape decoding) of each framework that can read it,
    the declared charset's first (the one shown when they agree)."""
    readings = []
    declared = text_codec(charset)
    if declared is not None and declared not in _PLAIN:
        readings += [(declared, declared), ("latin-1", declared)]  # Django's, and its fallback
    readings.append(("utf-8", "utf-8"))
    if not data.isascii():
        readings.append(("latin-1", "utf-8"))
    return readings


def _parse(data: bytes, raw: str, escapes: str, redactor: Redactor, truncated: bool) -> list[tuple[str, str]] | None:
    try:
        text = data.decode(raw)
    except (ValueError, LookupError, TypeError):
        return None
    if truncated and "&" in text:
        text = text.rsplit("&", 1)[0]  # the last pair may be cut: judged by name anyway
    try:
        return redactor.query(text, encoding=escapes)
    except (ValueError, LookupError, TypeError):
        return None


def form_pairs(data: bytes, charset: str | None, redactor: Redactor, truncated: bool) -> list[tuple[str, str]] | None:
    """The name/value pairs of a form body as the app reads them; None: it cannot be
    read (no framework decodes it) or its readings disagree where the lists act."""
    if data.isascii() and text_codec(charset) in _PLAIN:
        return _parse(data, "ascii", "utf-8", redactor, truncated)
    parsed = [p for p in (_parse(data, raw, esc, redactor, truncated) for raw, esc in _readings(data, charset)) if p is not None]
    if not parsed:
        return None
    first = parsed[0]
    names = [name for name, _ in first]
    if not redactor.active or all([name for name, _ in p] == names for p in parsed[1:]):
        return first  # the same names in every reading: each value is judged by its name
    for pairs in parsed:
        for name, value in pairs:
            if redactor.param(name, value) is not value:
                return None
    return first
