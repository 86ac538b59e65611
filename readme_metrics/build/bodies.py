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
2. ``multipart/form-data`` (requests) becomes ``params``: fields as ``{name, value}``,
   file parts as ``{name, fileName, contentType, value: "", _size}``; file content is
   never sent. JSON fields are redacted as JSON bodies are (step 4). Parsed here with a
   bounded splitter (part headers by :mod:`email`). Multipart response bodies are
   replaced by :data:`MULTIPART`.
3. ``application/x-www-form-urlencoded`` becomes ``params`` (requests) or its text
   rebuilt from the redacted pairs (responses). A field (or query parameter) whose value
   is a JSON document is redacted at every depth too.
4. JSON (``application/json``, ``*/*+json``, ``text/json``): with a list configured, the
   document is parsed, redacted at every depth and re-serialized. Text bodies that look
   like JSON (``{`` or ``[`` first) are redacted the same way when they parse.
5. Other text stays text in its charset; anything else is base64 with
   ``"encoding": "base64"`` (HAR 1.2). The builder encodes large ones late
   (see :func:`splice_late`): the log holds a token, the encoded JSON the base64.

Fail closed: with a denylist or allowlist configured, a body that declares JSON or a form
and cannot be parsed (bad syntax, bad charset, cut at ``max_body_bytes``, too deep) has its
text replaced by :data:`UNPARSABLE` or :data:`TRUNCATED`, never sent raw. (A url-encoded
form cut short is still parsed: every complete pair is judged by its name.)
"""

from __future__ import annotations

import base64
import functools
import os
import re
import zlib
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any

from readme_metrics.capture import BodyCopy
from readme_metrics.build.redaction import DROP, Redactor, encode_pairs, looks_json, replace_strings

#: Text of a body that declares JSON or a form but could not be parsed, so could not be
#: redacted (only when a denylist or allowlist is configured).
UNPARSABLE = "[REDACTED BODY: could not be parsed for redaction]"
#: Same, for a body cut at ``max_body_bytes`` before it could be parsed.
TRUNCATED = "[REDACTED BODY: truncated at max_body_bytes, could not be parsed for redaction]"
#: Text of a body in a content coding the SDK does not decode (``{coding}`` is its name).
ENCODED = "[OMITTED BODY: {coding}-encoded]"
#: Text of a multipart response body, or of a multipart request body that cannot be parsed.
MULTIPART = "[OMITTED BODY: multipart]"
#: Text of a body that cannot be judged key by key (free text, XML, binary) when an
#: allowlist is configured: the allowlist promises that everything unlisted is removed.
NOT_STRUCTURED = "[OMITTED BODY: not structured, allowlist]"

#: Parts of a multipart body beyond this many are not listed.
MAX_PARTS = 1000

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


_TEXT_TYPES = ("text/", "application/xml", "application/javascript", "application/x-www-form-urlencoded")
_FORM = "application/x-www-form-urlencoded"
_ZLIB_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@functools.lru_cache(maxsize=256)  # an API answers with a few content types, again and again
def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """(lower-case media type, parameters with lower-case names); the dict is shared:
    read it, never change it."""
    if not content_type:
        return "", {}
    media, _, rest = content_type.partition(";")
    params = {}
    for param in rest.split(";"):
        name, _, value = param.strip().partition("=")
        if name and value:
            params[name.lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def is_json(media: str) -> bool:
    return media in ("application/json", "text/json") or media.endswith("+json")


def is_text(media: str) -> bool:
    return is_json(media) or media.startswith(_TEXT_TYPES) or media.endswith("+xml")


def _decode(data: bytes, charset: str | None) -> str | None:
    try:
        return data.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        return None


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


# -- multipart -------------------------------------------------------------------------

#: What may follow a boundary for it to be a delimiter (RFC 2046, as the app's parser reads
#: it): ``--`` (the close delimiter), or optional blanks then the end of the line.
_AFTER_DELIMITER = {nl: re.compile(rb"--|[ \t]*" + nl) for nl in (b"\r\n", b"\n")}


def _split(data: bytes, delimiter: bytes, nl: bytes) -> list[bytes] | None:
    """``data`` cut at its delimiters: [preamble, what follows each delimiter...]; None if
    there is none. ``nl + delimiter`` followed by anything else is content, not a part."""
    after = _AFTER_DELIMITER[nl]
    chunks = (nl + data).split(nl + delimiter)
    parts = [chunks[0]]
    for chunk in chunks[1:]:
        if after.match(chunk):
            parts.append(chunk)
        else:  # "\r\n--BOUNDARYsomething": still the previous part's content
            parts[-1] += nl + delimiter + chunk
    return parts if len(parts) > 1 else None


def _multipart(data: bytes, boundary: str, redactor: Redactor, truncated: bool) -> list[dict[str, Any]] | None:
    """The parts of a multipart/form-data body as HAR params; None if it is not one.

    A delimiter counts only at the start of a line and followed by ``--`` or the end of
    the line (as for the app's own parser), so a field's content can never pass for
    another part. ``truncated``: the body was cut, so its last part (the one no delimiter
    closes) may be too.
    """
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    nl = b"\r\n"
    chunks = _split(data, delimiter, nl)
    if chunks is None:
        nl = b"\n"
        chunks = _split(data, delimiter, nl)
        if chunks is None:
            return None
    params: list[dict[str, Any]] = []
    header_parser = BytesHeaderParser()
    last = len(chunks) - 1
    for index, chunk in enumerate(chunks[1:], 1):
        if chunk.startswith(b"--") or len(params) >= MAX_PARTS:
            break  # the closing delimiter
        _padding, sep, rest = chunk.partition(nl)
        if rest.startswith(nl):
            head, content = b"", rest[len(nl) :]
        else:
            head, sep, content = rest.partition(nl + nl)
            if not sep:
                continue  # a part cut inside its headers: nothing known about it
        headers: Message = header_parser.parsebytes(head)
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = headers.get_filename()
        content_type, type_params = media_type(str(headers.get("content-type") or ""))
        text = None if filename is not None else _decode(content, type_params.get("charset"))
        if redactor.active:
            new = redactor.value(name, text)
            if new is DROP:
                continue
            if new is not text:  # denylisted (a file part too: its size is not worth a leak)
                params.append({"name": name, "value": new})
                continue
            if text is not None:
                text = _json_field(text, content_type, redactor, cut=truncated and index == last)
        if text is None:
            param: dict[str, Any] = {"name": name, "value": "", "_size": len(content)}
            if filename is not None:
                param["fileName"] = filename
            param["contentType"] = content_type or "application/octet-stream"
        else:
            param = {"name": name, "value": text}
            if content_type:
                param["contentType"] = content_type
        params.append(param)
    return params


def _json_field(text: str, content_type: str, redactor: Redactor, *, cut: bool) -> str:
    """A multipart field's text, redacted as a JSON body is when it is (or looks) JSON.

    Fails closed as a body does: cut at ``max_body_bytes`` → :data:`TRUNCATED`; declared
    JSON that does not parse → :data:`UNPARSABLE`.
    """
    declared = is_json(content_type)
    if not declared and not looks_json(text):
        return text
    if cut:
        return TRUNCATED
    redacted_text = redactor.json_text(text)
    if redacted_text is not None:
        return redacted_text
    return UNPARSABLE if declared else text


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

    media, params = media_type(content_type)
    charset = params.get("charset")

    if media.startswith("multipart/"):
        boundary = params.get("boundary")
        parts = _multipart(data, boundary, redactor, truncated) if request and boundary else None
        if parts is None:
            out["text"] = MULTIPART
        else:
            out["params"] = parts
        return out

    if media == _FORM:
        text = _decode(data, charset)
        if text is None:
            _text_or_marker(out, data, None, redactor, UNPARSABLE, late)
            return out
        if truncated and "&" in text:
            text = text.rsplit("&", 1)[0]  # the last pair may be cut: judged by name anyway
        items = redactor.pairs(redactor.query(text))
        if request:
            out["params"] = items
        else:
            out["text"] = encode_pairs(items) if redactor.active else text
        return out

    text = _decode(data, charset) if is_text(media) or not media else None
    if not redactor.active:
        _text_or_marker(out, data, text, redactor, None, late)
        return out
    declared = is_json(media)
    doc = text if text is not None else data
    keyed = looks_json(doc)  # an object or array: its keys can be judged
    if redactor.allow and not keyed:  # free text, XML, binary, a bare JSON scalar
        out["text"] = NOT_STRUCTURED
        return out
    if not keyed and not declared:
        _text_or_marker(out, data, text, redactor, None, late)
        return out
    # JSON, or it looks like it (under any media type, text or not): never sent unjudged.
    if truncated:
        out["text"] = TRUNCATED
        return out
    redacted_text = redactor.json_text(doc, body=True)
    if redacted_text is not None:
        out["text"] = redacted_text
    elif declared or text is None or redactor.allow:
        out["text"] = UNPARSABLE  # e.g. NDJSON under application/x-ndjson: one marker
    else:
        out["text"] = text  # text that merely starts with "{" (denylist only: free text)
    return out


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
