"""The event builder: a :class:`~readme_metrics.capture.Capture` becomes a log object.

Runs on the worker thread only. The log object is the one of the wire spec
(``shared/spec/wire-format.md``): ``_id``, ``_version``, the masked ``group``,
``clientIPAddress``, ``development`` and a HAR 1.2 log holding one entry.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import platform
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote

from readme_metrics._log import warn_limited
from readme_metrics._version import __version__
from readme_metrics.capture import BodyCopy, Capture
from readme_metrics.redaction import Redactor, mask

CREATOR = {
    "name": "readme-metrics (python)",
    "version": __version__,
    "comment": f"{platform.machine()}-{platform.system().lower()}{platform.release()}/{platform.python_version()}",
}

#: Group of an exchange whose grouping function failed: logged, but attributed to nobody.
ANONYMOUS_GROUP = {"id": "anonymous", "label": "anonymous"}

_TEXT_TYPES = ("text/", "application/xml", "application/javascript", "application/x-www-form-urlencoded")


class GroupError(ValueError):
    """The grouping function returned something that is not a usable group."""


def build_group(raw: Any) -> dict[str, Any]:
    """The wire ``group`` from what the grouping function returned (key masked)."""
    if raw is ANONYMOUS_GROUP:
        return dict(ANONYMOUS_GROUP)
    if not isinstance(raw, Mapping):
        raise GroupError(f"grouping function returned {type(raw).__name__}, expected a dict or None")
    key = raw.get("api_key", raw.get("id"))
    if key is None or (isinstance(key, str) and not key):
        raise GroupError("grouping function result has no 'api_key' (or 'id')")
    group: dict[str, Any] = {"id": mask(str(key))}
    for name in ("label", "email"):
        if raw.get(name) is not None:
            group[name] = str(raw[name])
    return group


def iso_time(wall: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-11-21T10:24:01.496Z``."""
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_text(status: int, reason: str | None) -> str:
    if reason:
        return reason
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    """First value of a header, by case-insensitive name."""
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _media_type(content_type: str | None) -> tuple[str, str | None]:
    """(lower-case media type, charset or None)."""
    if not content_type:
        return "", None
    media, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip().strip('"')
    return media.strip().lower(), charset


def is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _is_text(media: str) -> bool:
    return is_json(media) or media.startswith(_TEXT_TYPES) or media.endswith("+xml")


def _decode(data: bytes, charset: str | None) -> str | None:
    try:
        return data.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        return None


def body_fields(body: BodyCopy, content_type: str | None, redactor: Redactor, *, form_params: bool) -> dict[str, Any]:
    """``mimeType`` and ``text`` (or ``params``) of a HAR body, redacted.

    JSON stays JSON text; url-encoded forms become ``params`` (request side); text in its
    charset; anything else, or text that does not decode, is base64 with
    ``"encoding": "base64"``. A body cut at ``max_body_bytes`` is marked ``_truncated``.
    """
    media, charset = _media_type(content_type)
    data = body.data
    out: dict[str, Any] = {"mimeType": content_type or ""}
    if body.truncated:
        out["_truncated"] = True
        out["comment"] = f"truncated to {body.kept} of {body.size} bytes"
    if form_params and media == "application/x-www-form-urlencoded":
        text = _decode(data, charset or "utf-8")
        if text is not None:
            out["params"] = redactor.pairs(parse_qsl(text, keep_blank_values=True))
            return out
    text = _decode(data, charset) if _is_text(media) or not media else None
    if text is not None and is_json(media) and redactor.active and not body.truncated:
        with contextlib.suppress(ValueError):
            text = json.dumps(redactor.json(json.loads(text)), ensure_ascii=False, separators=(",", ":"))
    if text is None:
        out["text"] = base64.b64encode(data).decode("ascii")
        out["encoding"] = "base64"
    else:
        out["text"] = text
    return out


def _url(capture: Capture, query: list[tuple[str, str]] | None) -> str:
    path = quote(capture.path.encode("latin-1", "replace") if capture.path else b"/", safe="/:@!$&'()*+,;=-._~%")
    url = f"{capture.scheme}://{capture.host}{path}"
    if capture.query:
        url += (
            "?" + capture.query
            if query is None
            else "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
        )
    return url


def build_entry(capture: Capture, redactor: Redactor, *, log_body: bool = True) -> dict[str, Any]:
    """The HAR 1.2 entry of one exchange."""
    end = capture.end_mono if capture.end_mono is not None else capture.start_mono
    first = capture.response_start_mono if capture.response_start_mono is not None else end
    wait_ms = max(0.0, (first - capture.start_mono) * 1000)
    total_ms = max(0.0, (end - capture.start_mono) * 1000)

    query_pairs = parse_qsl(capture.query, keep_blank_values=True)
    query_items = redactor.pairs(query_pairs)
    # The URL carries the same query as queryString, after redaction.
    url = _url(capture, [(q["name"], q["value"]) for q in query_items] if redactor.active else None)

    request: dict[str, Any] = {
        "method": capture.method,
        "url": url,
        "httpVersion": capture.http_version,
        "headers": redactor.pairs(capture.request_headers),
        "queryString": query_items,
        "cookies": [],
        "headersSize": -1,
        "bodySize": capture.request_body.size,
    }
    if log_body and capture.request_body.size:
        content_type = header(capture.request_headers, "content-type")
        request["postData"] = body_fields(capture.request_body, content_type, redactor, form_params=True)

    content: dict[str, Any] = {"size": capture.response_body.size, "mimeType": ""}
    response_type = header(capture.response_headers, "content-type")
    if log_body and capture.response_body.size:
        content.update(body_fields(capture.response_body, response_type, redactor, form_params=False))
    else:
        content.update({"mimeType": response_type or "", "text": ""})
    response: dict[str, Any] = {
        "status": capture.status,
        "statusText": status_text(capture.status, capture.reason),
        "httpVersion": capture.http_version,
        "headers": redactor.pairs(capture.response_headers),
        "cookies": [],
        "content": content,
        "redirectURL": header(capture.response_headers, "location") or "",
        "headersSize": -1,
        "bodySize": capture.response_body.size,
    }
    entry: dict[str, Any] = {
        "pageref": url,
        "startedDateTime": iso_time(capture.started_at),
        "time": total_ms,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {"send": 0, "wait": wait_ms, "receive": max(0.0, total_ms - wait_ms)},
        "_completed": capture.completed,
    }
    if capture.error:
        entry["comment"] = f"the app raised {capture.error}"
    elif not capture.completed:
        entry["comment"] = "incomplete: the client went away or the response was not finished"
    return entry


def build_log(capture: Capture, redactor: Redactor, *, development: bool, log_body: bool = True) -> dict[str, Any]:
    """The wire log object of one exchange.

    A group the grouping function got wrong is logged as a warning and replaced by
    :data:`ANONYMOUS_GROUP`: the exchange is kept, attributed to nobody.
    """
    try:
        group = build_group(capture.group)
    except GroupError as exc:
        warn_limited("group", "readme_metrics: %s; logging the request as anonymous", exc)
        group = dict(ANONYMOUS_GROUP)
    return {
        "_id": capture.log_id or str(uuid.uuid4()),
        "_version": 3,
        "group": group,
        "clientIPAddress": capture.client_address or "",
        "development": development,
        "request": {
            "log": {
                "version": "1.2",
                "creator": CREATOR,
                "entries": [build_entry(capture, redactor, log_body=log_body)],
            }
        },
    }


def decode_base64_text(content: Mapping[str, Any]) -> bytes:
    """The bytes of a HAR ``content`` or ``postData`` (for tests and the collector)."""
    text = content.get("text", "")
    if content.get("encoding") == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            return b""
    return str(text).encode("utf-8")
