"""``multipart/form-data`` request bodies as HAR ``params``, read as the app reads them.

The parts are found by werkzeug's own decoder (:class:`werkzeug.sansio.multipart.
MultipartDecoder`, what Flask and every werkzeug app parse forms with; werkzeug is a base
dependency): where a part starts and ends, which line breaks count, what a boundary holding
``;`` is, are the app's answers, not ours. Frameworks still disagree on a part's *name*
(which of two ``name=`` parameters counts, RFC 2231 ``name*=``, several
``Content-Disposition`` headers): a part is judged by **every** name an app may read it
under (the denylist redacts it if any is listed; the allowlist keeps its value only if all
are allowed), and logged under werkzeug's.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from readme_metrics.build.media import TRUNCATED, UNPARSABLE, decode, is_json, media_type
from readme_metrics.build.redaction import Redactor, looks_json

#: Parts of a multipart body beyond this many are not listed.
MAX_PARTS = 1000

#: Every ``name`` parameter of a ``Content-Disposition`` value (``name``, ``name*``,
#: continuations ``name*0``...), quoted or not.
_NAME_PARAM = re.compile(r'(?:^|;)\s*name(\*)?(?:\*?\d+\*?)?\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.IGNORECASE)


#: A ``Content-Disposition`` header line inside a part's content.
_EMBEDDED_DISPOSITION = re.compile(rb"content-disposition[ \t]*:([^\r\n]*)", re.IGNORECASE)


def embedded_names(content: bytes) -> list[str]:
    """The part names of what looks like parts inside ``content`` (a parser that splits a
    body where werkzeug does not would read those parts)."""
    lines = [m.group(1).decode("latin-1") for m in _EMBEDDED_DISPOSITION.finditer(content)]
    return part_names(lines, None) if lines else []


def part_names(dispositions: list[str], werkzeug_name: str | None) -> list[str]:
    """Every name a framework may read a part under (werkzeug's first)."""
    names = [werkzeug_name] if werkzeug_name else []
    for value in dispositions:
        for star, raw in _NAME_PARAM.findall(value):
            raw = raw.strip()
            if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            if star:  # RFC 2231: charset'language'percent-encoded
                raw = unquote(raw.rpartition("'")[2], errors="replace")
            if raw not in names:
                names.append(raw)
        _, params = parse_options_header(value)
        name = params.get("name")
        if name and name not in names:
            names.append(name)
    return names


def multipart_params(data: bytes, boundary: str, redactor: Redactor, truncated: bool) -> list[dict[str, Any]] | None:
    """The parts of a multipart/form-data body as HAR params; None if it has no part.

    ``truncated``: the body was cut, so its last part (the one no delimiter closes) may be
    too.
    """
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    try:
        decoder = MultipartDecoder(delimiter[2:])
    except (ValueError, TypeError):
        return None
    decoder.receive_data(data)
    if not truncated:
        decoder.receive_data(None)
    params: list[dict[str, Any]] = []
    current: tuple[list[str], str | None, Any] | None = None
    content = bytearray()
    seen = False

    def finish(cut: bool) -> None:
        if current is not None and len(params) < MAX_PARTS:
            param = _param(current, bytes(content), redactor, cut, delimiter)
            if param is not None:
                params.append(param)

    while True:
        try:
            event = decoder.next_event()
        except Exception:  # werkzeug gives up here, and so does the app: what came before stays
            break
        if isinstance(event, NeedData) or isinstance(event, Epilogue):
            break
        if isinstance(event, (Field, File)):
            seen = True
            dispositions = [str(v) for v in event.headers.getlist("content-disposition")]
            filename = event.filename if isinstance(event, File) else None
            current = (part_names(dispositions, event.name), filename, event.headers)
            content = bytearray()
        elif isinstance(event, Data):
            content += event.data
            if not event.more_data:
                finish(False)
                current = None
                if len(params) >= MAX_PARTS:
                    break
    if truncated:
        finish(True)  # the part the cut fell in (if its headers came whole)
    return params if seen or params else None


def _param(
    part: tuple[list[str], str | None, Any], content: bytes, redactor: Redactor, cut: bool, delimiter: bytes
) -> dict[str, Any] | None:
    names, filename, headers = part
    if redactor.active and filename is None and delimiter in content:
        # Content that holds the delimiter: another parser may read parts in it (line
        # breaks, blanks after the boundary), so their names count for this value too.
        names = names + embedded_names(content)
    if not names:
        return None  # a part without a name: no app reads it
    name = names[0]
    content_type, type_params = media_type(str(headers.get("content-type") or ""))
    text = None if filename is not None else decode(content, type_params.get("charset"))
    if redactor.active:
        new = redactor.names_value(names, text)
        if new is not text:  # listed (a file part too: its size is not worth a leak)
            return {"name": name, "value": new}
        if text is not None:
            text = json_field(text, content_type, redactor, cut=cut)
    if text is None:
        param: dict[str, Any] = {"name": name, "value": "", "_size": len(content)}
        if filename is not None:
            param["fileName"] = filename
        param["contentType"] = content_type or "application/octet-stream"
        return param
    param = {"name": name, "value": text}
    if content_type:
        param["contentType"] = content_type
    return param


def json_field(text: str, content_type: str, redactor: Redactor, *, cut: bool) -> str:
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
