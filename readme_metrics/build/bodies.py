"""Bodies: a bounded copy of a request or response body becomes HAR ``postData``/``content``.

Runs on the worker thread only, on the copy the request path kept (at most
``max_body_bytes``). What happens, in order:

1. ``Content-Encoding``: ``gzip``/``x-gzip``/``deflate`` (also chained, e.g.
   ``gzip, gzip``) are decoded, each layer with ``zlib.decompressobj(...).decompress(data,
   max_length)``: the decoded text is at most ``max_body_bytes`` whatever the ratio, so a
   small bomb costs no more than an ordinary large body. More than that is cut (and marked
   truncated). ``br``, ``zstd`` or any other coding, or a stream that does not decode,
   gives the opaque marker :data:`ENCODED` (with the coding's name): compressed bytes are
   never sent as if they were text.
2. A body cut at ``max_body_bytes`` that ends with a prefix of the API key loses that
   prefix (:func:`~readme_metrics.build.secrets.trim_key_prefix`).
3. ``multipart/form-data`` (requests) becomes ``params`` (see
   :mod:`~readme_metrics.build.multipart`: werkzeug's decoder, every name judged); file
   content is never sent. Multipart response bodies are replaced by :data:`MULTIPART`.
4. ``application/x-www-form-urlencoded`` becomes ``params`` (requests) or its text
   rebuilt from the redacted pairs (responses), read as the frameworks read it (see
   :mod:`~readme_metrics.build.forms`). A form body that is JSON (``curl -d '{...}'``) is
   judged as JSON; a field (or query parameter) whose value is a JSON document is
   redacted at every depth too.
5. JSON (``application/json``, ``*/*+json``, ``text/json``): with a list configured, the
   document is parsed, redacted at every depth (JSON texts inside its strings too) and
   re-serialized. Bodies that look like JSON (``{`` or ``[`` first) are redacted the same
   way when they parse; free text has each line that looks like JSON judged (NDJSON).
6. Other text stays text in its charset; anything else is base64 with
   ``"encoding": "base64"`` (HAR 1.2). The builder encodes large ones late
   (see :func:`splice_late`): the log holds a token, the encoded JSON the base64.

Fail closed: with a denylist or allowlist configured, a body that declares JSON or a form
and cannot be parsed (bad syntax, bad charset, cut at ``max_body_bytes``, too deep) has its
text replaced by :data:`UNPARSABLE` or :data:`TRUNCATED`, never sent raw. (A url-encoded
form cut short is still parsed: every complete pair is judged by its name.)
"""

from __future__ import annotations

import base64
import os
import zlib
from typing import Any

from readme_metrics.build.forms import form_pairs
from readme_metrics.build.media import TRUNCATED, UNPARSABLE, decode, is_json, is_text, media_type
from readme_metrics.build.multipart import MAX_PARTS, multipart_params
from readme_metrics.build.redaction import Redactor, encode_pairs, looks_json, replace_strings
from readme_metrics.build.secrets import trim_key_prefix
from readme_metrics.capture import BodyCopy

__all__ = [
    "ENCODED",
    "LATE_AT",
    "MAX_PARTS",
    "MULTIPART",
    "NOT_STRUCTURED",
    "TRUNCATED",
    "UNPARSABLE",
    "body_fields",
    "decompress",
    "fill_late",
    "splice_late",
]

#: Text of a body in a content coding the SDK does not decode (``{coding}`` is its name).
ENCODED = "[OMITTED BODY: {coding}-encoded]"
#: Text of a multipart response body, or of a multipart request body that cannot be parsed.
MULTIPART = "[OMITTED BODY: multipart]"
#: Text of a body that cannot be judged key by key (free text, XML, binary) when an
#: allowlist is configured: the allowlist promises that everything unlisted is removed.
NOT_STRUCTURED = "[OMITTED BODY: not structured, allowlist]"

#: A binary body of this many bytes or more is base64-encoded late when the builder is
#: given a ``late`` list (see :func:`splice_late`).
LATE_AT = 64 * 1024
#: The text that stands for a late body in the log: unguessable, so no value of the
#: exchange can be mistaken for it; plain ASCII, so JSON writes it as it is.
_LATE_TOKEN = f"readme-metrics-late-base64-{os.urandom(16).hex()}-"


def _late_token(index: int) -> str:
    return f"{_LATE_TOKEN}{index}"


def splice_late(data: bytes, late: list[bytes]) -> bytes:
    """The encoded log ``data`` with the base64 of each ``late`` body where its token is.

    For a large binary body the log holds a short token instead of its base64 text, and
    the base64 is made here, as bytes, straight into the encoding: the text (as large
    again) is never made, and each body's bytes are let go as soon as its base64 exists.
    Raises :class:`ValueError` if a token is not found (the log is then not sent whole).
    """
    parts: list[bytes] = []
    pos = 0
    for index in range(len(late)):
        token = b'"' + _late_token(index).encode("ascii") + b'"'
        at = data.find(token, pos)
        if at < 0:
            raise ValueError("a late body's place is missing from the encoded log")
        parts += (data[pos : at + 1], base64.b64encode(late[index]))
        late[index] = b""
        pos = at + len(token) - 1
    parts.append(data[pos:])
    return b"".join(parts)


def fill_late(value: Any, late: list[bytes]) -> None:
    """Put each ``late`` body's base64 text in place of its token in the log ``value``
    (in place): the log can then be handled as any other (scrubbed, encoded again)."""
    if not late:
        return
    texts = {_late_token(i): base64.b64encode(data).decode("ascii") for i, data in enumerate(late)}
    late.clear()
    replace_strings(value, texts.get)


_FORM = "application/x-www-form-urlencoded"
_ZLIB_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


# -- content codings -------------------------------------------------------------------


class _UndecodableError(Exception):
    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self.coding = coding


def decompress(data: bytes, content_encoding: str, limit: int) -> tuple[bytes, bool]:
    """Undo ``Content-Encoding`` (outermost last); (decoded, cut at ``limit``).

    Each layer produces at most ``limit`` bytes (``limit + 1`` to know it was cut). Raises
    :class:`_UndecodableError` for an unknown coding or a stream that is not what it says.
    """
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    cut = False
    for coding in reversed([c for c in codings if c and c != "identity"]):
        wbits = _ZLIB_CODINGS.get(coding)
        if wbits is None:
            raise _UndecodableError(coding)
        try:
            data, layer_cut = _inflate(data, wbits, limit)
        except zlib.error:
            if coding != "deflate":
                raise _UndecodableError(coding) from None
            try:  # "deflate" is often sent raw, without the zlib wrapper
                data, layer_cut = _inflate(data, -zlib.MAX_WBITS, limit)
            except zlib.error:
                raise _UndecodableError(coding) from None
        cut = cut or layer_cut
    return data, cut


def _inflate(data: bytes, wbits: int, limit: int) -> tuple[bytes, bool]:
    out = bytearray()
    while data:
        d = zlib.decompressobj(wbits)
        try:
            out += d.decompress(data, limit + 1 - len(out))
        except zlib.error:
            if not out:
                raise
            break  # trailing bytes after a gzip member: keep what decoded
        if len(out) > limit:
            return bytes(out[:limit]), True
        if d.unconsumed_tail:  # output limit reached exactly
            return bytes(out), True
        # gzip allows several members one after the other.
        data = d.unused_data if wbits > zlib.MAX_WBITS and d.eof else b""
    return bytes(out), False


# -- the body --------------------------------------------------------------------------


def _codings(content_encoding: str | None) -> str:
    """The content codings that do something (``identity`` left out), comma-separated."""
    if not content_encoding:
        return ""
    return ", ".join(c for c in (c.strip().lower() for c in content_encoding.split(",")) if c and c != "identity")


def body_fields(
    body: BodyCopy,
    content_type: str | None,
    redactor: Redactor,
    *,
    request: bool,
    content_encoding: str | None = None,
    late: list[bytes] | None = None,
) -> dict[str, Any]:
    """``mimeType`` and ``text`` (or ``params``) of a HAR body, redacted.

    ``request``: the body is ``postData`` (forms become ``params``), else ``content``.
    ``content_encoding``: every ``Content-Encoding`` value of the message, comma-joined.
    ``late``: where a large binary body goes, leaving a token as its text (see
    :func:`splice_late`); None: its base64 text is made here.
    """
    out: dict[str, Any] = {"mimeType": content_type or ""}
    data = body.data
    truncated = body.truncated
    if truncated:
        out["_truncated"] = True
        out["comment"] = f"truncated to {body.kept} of {body.size} bytes"
    codings = _codings(content_encoding)
    if codings:
        try:
            data, cut = decompress(data, codings, redactor.max_body_bytes)
        except _UndecodableError as exc:
            out["text"] = ENCODED.format(coding=exc.coding)
            return out
        out["_decoded"] = codings
        if cut and not truncated:
            truncated = True
            out["_truncated"] = True
            out["comment"] = f"decoded text cut to {len(data)} bytes"
        elif not truncated:
            out["_decodedSize"] = len(data)

    if truncated and redactor.key_bytes is not None:
        data = trim_key_prefix(data, redactor.key_bytes)  # a cut inside the API key

    media, params = media_type(content_type)
    charset = params.get("charset")

    if media.startswith("multipart/"):
        boundary = params.get("boundary")
        parts = multipart_params(data, boundary, redactor, truncated) if request and boundary else None
        if parts is None:
            out["text"] = MULTIPART
        else:
            out["params"] = parts
        return out

    if media == _FORM and not (redactor.active and looks_json(data)):
        pairs = form_pairs(data, charset, redactor, truncated)
        if pairs is None:
            _text_or_marker(out, data, None, redactor, UNPARSABLE, late)
            return out
        items = redactor.pairs(pairs)
        if request:
            out["params"] = items
        else:
            out["text"] = encode_pairs(items) if redactor.active else decode(data, charset) or encode_pairs(items)
        return out

    text = decode(data, charset) if is_text(media) or not media else None
    if not redactor.active:
        _text_or_marker(out, data, text, redactor, None, late)
        return out
    # A form whose body is JSON (``curl -d '{...}'``) is judged as the JSON it is.
    declared = is_json(media) or media == _FORM
    doc = text if text is not None else data
    keyed = looks_json(doc)  # an object or array: its keys can be judged
    if redactor.allow and not keyed:  # free text, XML, binary, a bare JSON scalar
        out["text"] = NOT_STRUCTURED
        return out
    if not keyed and not declared:
        if text is not None and redactor.may_match(text):
            text = _json_lines(text, redactor)  # JSON lines in free text
        _text_or_marker(out, data, text, redactor, None, late)
        return out
    # JSON, or it looks like it (under any media type, text or not): never sent unjudged.
    if truncated:
        out["text"] = TRUNCATED
        return out
    redacted_text = redactor.json_text(doc, body=True)
    if redacted_text is not None:
        out["text"] = redacted_text
    elif declared or text is None:
        out["text"] = UNPARSABLE  # e.g. NDJSON under application/x-ndjson: one marker
    elif redactor.allow:
        out["text"] = NOT_STRUCTURED  # free text that merely starts with "{"
    else:
        out["text"] = _json_lines(text, redactor)  # free text (NDJSON under text/plain...)
    return out


def _json_lines(text: str, redactor: Redactor) -> str:
    """Free text with each line that looks like JSON judged as JSON (NDJSON, a log of
    JSON records): redacted when it parses; when it does not and may hold a listed key,
    the line becomes :data:`UNPARSABLE`. Other lines are free text, sent as they are."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if not looks_json(line):
            continue
        body, cr = (line[:-1], "\r") if line.endswith("\r") else (line, "")
        new = redactor.json_text(body)
        if new is None:
            if redactor.may_match(body):
                lines[index] = UNPARSABLE + cr
        elif new is not body:
            lines[index] = new + cr
    return "\n".join(lines)


def _text_or_marker(
    out: dict[str, Any],
    data: bytes,
    text: str | None,
    redactor: Redactor,
    marker: str | None,
    late: list[bytes] | None,
) -> None:
    """``text`` as is, or (when it is None) the marker if lists are on, else base64
    (late, for a large body when ``late`` is given)."""
    if text is not None:
        out["text"] = text
    elif marker is not None and redactor.active:
        out["text"] = marker
    else:
        data = redactor.scrub_bytes(data)
        if late is not None and len(data) >= LATE_AT:
            out["text"] = _late_token(len(late))
            late.append(data)
        else:
            out["text"] = base64.b64encode(data).decode("ascii")
        out["encoding"] = "base64"
