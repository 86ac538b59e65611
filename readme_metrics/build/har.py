"""The event builder: a :class:`~readme_metrics.capture.Capture` becomes a log object.

Runs on the delivery worker only, never on the request path. The log object is the one of
the wire protocol (``docs/protocol.md``): ``_id``, ``_version``, the masked ``group``,
``clientIPAddress``, ``development`` and a HAR 1.2 log holding one entry.

Headers, query parameters and the URL go through the configuration's
:class:`~readme_metrics.build.redaction.Redactor`; bodies through
:func:`readme_metrics.build.bodies.body_fields` (decoding, forms, multipart, JSON,
fail-closed markers). The API key scrub is done on the encoded log
(:class:`readme_metrics.build.encode.Builder`).

This is the hot part of the SDK's cost (see ``docs/benchmarks.md``): each header is
decoded, redacted and examined (content type, codings, ``Location``) in one loop, and
what repeats from one log to the next (the creator, the date of the current second, the
masked group of a caller) is computed once.
"""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from readme_metrics._log import warn_limited
from readme_metrics._version import __version__
from readme_metrics.build.bodies import body_fields
from readme_metrics.build.extras import add_extras
from readme_metrics.build.headers import redact_headers
from readme_metrics.build.redaction import Redactor, encode_pairs, mask
from readme_metrics.build.secrets import trim_key_prefix
from readme_metrics.capture import (
    ANONYMOUS_GROUP,
    OUTGOING_GROUP,
    Capture,
    OutgoingCapture,
    header_pairs,
    new_log_id,
)

CREATOR = {
    "name": "readme-metrics (python)",
    "version": __version__,
    "comment": f"{platform.machine()}-{platform.system().lower()}{platform.release()}/{platform.python_version()}",
}


class GroupError(ValueError):
    """The grouping function returned something that is not a usable group."""


def build_group(raw: Any) -> dict[str, Any]:
    """The wire ``group`` from what the grouping function returned (key masked)."""
    if raw is ANONYMOUS_GROUP or raw is OUTGOING_GROUP:
        return dict(raw)
    if not isinstance(raw, Mapping):
        raise GroupError(f"grouping function returned {type(raw).__name__}, expected a dict or None")
    key = raw.get("api_key", raw.get("id"))
    if key is None or (isinstance(key, str) and not key):
        raise GroupError("grouping function result has no 'api_key' (or 'id')")
    group: dict[str, Any] = {"id": mask(key if type(key) is str else str(key))}
    label = raw.get("label")
    if label is not None:
        group["label"] = label if type(label) is str else str(label)
    email = raw.get("email")
    if email is not None:
        group["email"] = email if type(email) is str else str(email)
    return group


#: The date and time of the last second formatted, ``(second, "YYYY-MM-DDTHH:MM:SS")``:
#: logs of one second share it (a tuple, swapped whole, so threads never see half of it).
_second: tuple[int, str] = (-1, "")


def iso_time(wall: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-11-21T10:24:01.496Z``."""
    global _second
    second = int(wall // 1)
    millis = int((wall - second) * 1000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{millis:03d}Z"


_PHRASES = {status.value: status.phrase for status in HTTPStatus}
#: Paths made only of these characters go into the URL as they are (no quoting work).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~%]+")


def status_text(status: int, reason: str | None) -> str:
    """The reason phrase the app gave, else the standard one, else ``""``."""
    return reason or _PHRASES.get(status, "")


class _Headers:
    """One message's headers as HAR ``{name, value}`` items (redacted), and what the
    builder needs from them: ``content_type`` (the first ``Content-Type``),
    ``content_encoding`` (every ``Content-Encoding``, comma-joined; None when absent),
    both as sent, and ``location`` (the redacted ``Location``, ``""`` when absent). Names
    are compared only when their length fits (most headers are passed by length alone)."""

    __slots__ = ("content_encoding", "content_type", "items", "location")

    def __init__(self, raw: Sequence[Sequence[Any]], redactor: Redactor) -> None:
        pairs = header_pairs(raw)
        content_type = codings = None
        for name, value in pairs:
            size = len(name)
            if size == 12:
                if content_type is None and name.lower() == "content-type":
                    content_type = value
            elif size == 16 and name.lower() == "content-encoding":
                codings = value if codings is None else f"{codings}, {value}"
        self.content_type: str | None = content_type
        self.content_encoding: str | None = codings
        self.items = items = redact_headers(redactor, pairs)
        self.location = ""
        for item in items:
            if len(item["name"]) == 8 and item["name"].lower() == "location":
                self.location = item["value"]
                break


def _target(capture: Capture) -> tuple[str, str, str | None]:
    """(path, query, fragment) of the request. A raw request target may carry a fragment
    (``GET /x?a=1#token=S``), which a server may leave in the query string (raw, never
    percent-decoded, so a ``#`` there can only be the fragment's): it is split off, so
    that its pairs are judged as a fragment's, not hidden in a parameter's value. (A
    path's ``#`` is not split: a decoded path holds one for ``%23``.)"""
    path, query = capture.path or "/", capture.query
    if "#" in query:
        query, _, fragment = query.partition("#")
        return path, query, fragment
    return path, query, None


def _url(capture: Capture, redactor: Redactor, target: tuple[str, str, str | None], query: list[dict[str, str]]) -> str:
    """The request URL; with a list configured its query rebuilt from ``query`` (the
    redacted pairs) and its fragment's pairs redacted."""
    path, raw_query, fragment = target
    if not _PLAIN_PATH.fullmatch(path):
        path = quote(path.encode("latin-1", "replace"), safe="/:@!$&'()*+,;=-._~%")
    url = f"{capture.scheme}://{capture.host}{path}"
    if not raw_query:
        pass
    elif not redactor.query_may_change(raw_query):  # no list, or nothing listed can be in it
        url += "?" + raw_query
    elif query:
        url += "?" + encode_pairs(query)
    if fragment is not None:
        url += redactor.fragment(fragment)
    return url


def build_entry(
    capture: Capture, redactor: Redactor, *, log_body: bool = True, late: list[bytes] | None = None
) -> dict[str, Any]:
    """The HAR 1.2 entry of one exchange (``late``: see :func:`readme_metrics.build.bodies.body_fields`)."""
    start = capture.start_mono
    end = capture.end_mono if capture.end_mono is not None else start
    first = capture.response_start_mono if capture.response_start_mono is not None else end
    wait_ms = max(0.0, (first - start) * 1000)
    total_ms = max(0.0, (end - start) * 1000)

    target = _target(capture)
    query_items = redactor.pairs(redactor.query(target[1])) if target[1] else []
    # The URL carries the same query as queryString, after redaction.
    url = _url(capture, redactor, target, query_items)
    sent = _Headers(capture.request_headers, redactor)
    answered = _Headers(capture.response_headers, redactor)
    request_body = capture.request_body
    response_body = capture.response_body

    request: dict[str, Any] = {
        "method": capture.method,
        "url": url,
        "httpVersion": capture.http_version,
        "headers": sent.items,
        "queryString": query_items,
        "cookies": [],
        "headersSize": -1,
        "bodySize": request_body.size,
    }
    if log_body and request_body.size:
        request["postData"] = body_fields(
            request_body, sent.content_type, redactor, request=True, content_encoding=sent.content_encoding, late=late
        )

    if log_body and response_body.size:
        content = body_fields(
            response_body,
            answered.content_type,
            redactor,
            request=False,
            content_encoding=None if getattr(capture, "decoded", False) else answered.content_encoding,
            late=late,
        )
        content = {"size": response_body.size, **content}
    else:
        content = {"size": response_body.size, "mimeType": answered.content_type or "", "text": ""}
    status = capture.status
    entry: dict[str, Any] = {
        "pageref": url,
        "startedDateTime": iso_time(capture.started_at),
        "time": total_ms,
        "request": request,
        "response": {
            "status": status,
            "statusText": capture.reason or _PHRASES.get(status, ""),
            "httpVersion": capture.http_version,
            "headers": answered.items,
            "cookies": [],
            "content": content,
            "redirectURL": answered.location,
            "headersSize": -1,
            "bodySize": response_body.size,
        },
        "cache": {},
        "timings": {"send": 0, "wait": wait_ms, "receive": max(0.0, total_ms - wait_ms)},
        "_completed": capture.completed,
    }
    if capture.error:
        # The exception's message is free text: with a list configured only its type is sent.
        error = capture.error.partition(":")[0] if redactor.active else capture.error
        if redactor.api_key is not None:  # the message is cut at 500 characters: maybe in the key
            error = trim_key_prefix(error, redactor.api_key)
        entry["comment"] = f"the app raised {error}"
    elif not capture.completed:
        entry["comment"] = "incomplete: the client went away or the response was not finished"
    if type(capture) is OutgoingCapture:
        _outgoing_fields(capture, entry)
    if capture.extras is not None:  # _route, _weight, _metadata, _exception (docs/routes.md)
        add_extras(entry, capture.extras, redactor)
    return entry


def _outgoing_fields(capture: OutgoingCapture, entry: dict[str, Any]) -> None:
    """A call the app made (:mod:`readme_metrics.outgoing`): ``_direction``, ``_parent``;
    a call that failed (no answer: status 0) has ``_error`` (the exception, as ``comment``
    has it), as browsers' HAR files have it."""
    entry["_direction"] = "outgoing"
    if capture.parent:
        entry["_parent"] = capture.parent
    comment = entry.get("comment")
    if comment and capture.error:
        entry["_error"] = error = comment.removeprefix("the app raised ")
        entry["comment"] = f"the call failed: {error}" if not capture.status else f"the body was cut short: {error}"
    elif comment:
        entry["comment"] = "incomplete: the app closed the response (or dropped it) before reading all of its body"


def build_log(
    capture: Capture,
    redactor: Redactor,
    *,
    development: bool,
    log_body: bool = True,
    late: list[bytes] | None = None,
) -> dict[str, Any]:
    """The wire log object of one exchange (``late``: large binary bodies to be
    base64-encoded late, see :func:`readme_metrics.build.bodies.splice_late`).

    The API key scrub is not done here: :class:`readme_metrics.build.encode.Builder`
    searches the encoded log for the key and scrubs only a log that holds it.

    A group the grouping function got wrong is logged as a warning and replaced by
    :data:`~readme_metrics.capture.ANONYMOUS_GROUP`: the exchange is kept, attributed to
    nobody.
    """
    try:
        group = build_group(capture.group)
    except GroupError as exc:
        warn_limited("group", "readme_metrics: %s; logging the request as anonymous", exc)
        group = dict(ANONYMOUS_GROUP)
    return {
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
