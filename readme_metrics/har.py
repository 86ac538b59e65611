"""The event builder: a :class:`~readme_metrics.capture.Capture` becomes a log object.

Runs on the worker thread only. The log object is the one of the wire spec
(``shared/spec/wire-format.md``): ``_id``, ``_version``, the masked ``group``,
``clientIPAddress``, ``development`` and a HAR 1.2 log holding one entry.

Headers, query parameters and the URL go through the configuration's
:class:`~readme_metrics.redaction.Redactor`; bodies through
:func:`readme_metrics.bodies.body_fields` (decoding, forms, multipart, JSON, fail-closed
markers). The configured API key is scrubbed by the delivery worker, from the encoded
batch (see :class:`readme_metrics.delivery.Client`).
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from readme_metrics._log import warn_limited
from readme_metrics._version import __version__
from readme_metrics.bodies import body_fields
from readme_metrics.capture import Capture, new_log_id
from readme_metrics.redaction import Redactor, encode_pairs, mask

CREATOR = {
    "name": "readme-metrics (python)",
    "version": __version__,
    "comment": f"{platform.machine()}-{platform.system().lower()}{platform.release()}/{platform.python_version()}",
}

#: Group of an exchange whose grouping function failed: logged, but attributed to nobody.
ANONYMOUS_GROUP = {"id": "anonymous", "label": "anonymous"}


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


_PHRASES = {status.value: status.phrase for status in HTTPStatus}
#: Paths made only of these characters go into the URL as they are (no quoting work).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~%]+")


def status_text(status: int, reason: str | None) -> str:
    """The reason phrase the app gave, else the standard one, else ``""``."""
    return reason or _PHRASES.get(status, "")


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def header_pairs(headers: Sequence[Sequence[Any]]) -> list[tuple[str, str]]:
    """A capture's header list as ``(str, str)`` pairs, order and repeats kept.

    The request path keeps headers as the protocol gave them (see
    :class:`~readme_metrics.capture.Capture`): ``(str, str)`` pairs are taken as they
    are, ASGI's ``(bytes, bytes)`` pairs are decoded as latin-1 (what HTTP allows), and
    anything else an app put in a header list is made text rather than refused.
    """
    if not headers:
        return []
    if isinstance(headers[0][0], str):
        return [
            (name, value) if type(name) is str and type(value) is str else (_text(name), _text(value))
            for name, value in headers
        ]
    try:
        return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
    except (AttributeError, TypeError, ValueError):  # a mix: one by one
        return [(_text(item[0]), _text(item[1])) for item in headers]


def _content_headers(headers: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """The first ``Content-Type`` value and all ``Content-Encoding`` values comma-joined
    (each such header adds codings); None for a header that is not there. Only names of
    their lengths are compared (most headers are skipped by their length alone)."""
    content_type: str | None = None
    codings: list[str] = []
    for name, value in headers:
        size = len(name)
        if size == 12:
            if content_type is None and name.lower() == "content-type":
                content_type = value
        elif size == 16 and name.lower() == "content-encoding":
            codings.append(value)
    return content_type, ", ".join(codings) if codings else None


def _url(capture: Capture, query: list[dict[str, str]] | None) -> str:
    """The request URL; with ``query`` (redacted pairs), its query rebuilt from them."""
    path = capture.path or "/"
    if not _PLAIN_PATH.fullmatch(path):
        path = quote(path.encode("latin-1", "replace"), safe="/:@!$&'()*+,;=-._~%")
    url = f"{capture.scheme}://{capture.host}{path}"
    if query is None:
        if capture.query:
            url += "?" + capture.query
    elif query:
        url += "?" + encode_pairs(query)
    return url


def _redirect_url(headers: list[dict[str, str]]) -> str:
    """The (already redacted) ``Location`` header, or ``""``."""
    for item in headers:
        if item["name"].lower() == "location":
            return item["value"]
    return ""


def build_entry(
    capture: Capture, redactor: Redactor, *, log_body: bool = True, late: list[bytes] | None = None
) -> dict[str, Any]:
    """The HAR 1.2 entry of one exchange (``late``: see :func:`readme_metrics.bodies.body_fields`)."""
    end = capture.end_mono if capture.end_mono is not None else capture.start_mono
    first = capture.response_start_mono if capture.response_start_mono is not None else end
    wait_ms = max(0.0, (first - capture.start_mono) * 1000)
    total_ms = max(0.0, (end - capture.start_mono) * 1000)

    query_items = redactor.pairs(redactor.query(capture.query)) if capture.query else []
    # The URL carries the same query as queryString, after redaction.
    url = _url(capture, query_items if redactor.active else None)
    sent_headers = header_pairs(capture.request_headers)
    answered_headers = header_pairs(capture.response_headers)
    request_headers = redactor.headers(sent_headers)
    response_headers = redactor.headers(answered_headers)

    request: dict[str, Any] = {
        "method": capture.method,
        "url": url,
        "httpVersion": capture.http_version,
        "headers": request_headers,
        "queryString": query_items,
        "cookies": [],
        "headersSize": -1,
        "bodySize": capture.request_body.size,
    }
    if log_body and capture.request_body.size:
        sent_type, sent_encoding = _content_headers(sent_headers)
        request["postData"] = body_fields(
            capture.request_body, sent_type, redactor, request=True, content_encoding=sent_encoding, late=late
        )

    content: dict[str, Any] = {"size": capture.response_body.size, "mimeType": ""}
    response_type, response_encoding = _content_headers(answered_headers)
    if log_body and capture.response_body.size:
        content.update(
            body_fields(
                capture.response_body,
                response_type,
                redactor,
                request=False,
                content_encoding=response_encoding,
                late=late,
            )
        )
    else:
        content.update({"mimeType": response_type or "", "text": ""})
    response: dict[str, Any] = {
        "status": capture.status,
        "statusText": status_text(capture.status, capture.reason),
        "httpVersion": capture.http_version,
        "headers": response_headers,
        "cookies": [],
        "content": content,
        "redirectURL": _redirect_url(response_headers),
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
        # The exception's message is free text: with a list configured only its type is sent.
        error = capture.error.partition(":")[0] if redactor.active else capture.error
        entry["comment"] = f"the app raised {error}"
    elif not capture.completed:
        entry["comment"] = "incomplete: the client went away or the response was not finished"
    return entry


def build_log(
    capture: Capture,
    redactor: Redactor,
    *,
    development: bool,
    log_body: bool = True,
    late: list[bytes] | None = None,
) -> dict[str, Any]:
    """The wire log object of one exchange (``late``: large binary bodies to be
    base64-encoded late, see :func:`readme_metrics.bodies.splice_late`).

    The API key scrub is not done here: the delivery worker searches the encoding for the
    key (each log's in the delivery process, each batch's in the app's process) and scrubs
    (:meth:`Redactor.scrub`) only what holds it.

    A group the grouping function got wrong is logged as a warning and replaced by
    :data:`ANONYMOUS_GROUP`: the exchange is kept, attributed to nobody.
    """
    try:
        group = build_group(capture.group)
    except GroupError as exc:
        warn_limited("group", "readme_metrics: %s; logging the request as anonymous", exc)
        group = dict(ANONYMOUS_GROUP)
    log = {
        "_id": capture.log_id or new_log_id(),
        "_version": 3,
        "group": group,
        "clientIPAddress": capture.client_address or "",
        "development": development,
        "request": {
            "log": {
                "version": "1.2",
                "creator": CREATOR,
                "entries": [build_entry(capture, redactor, log_body=log_body, late=late)],
            }
        },
    }
    return log
