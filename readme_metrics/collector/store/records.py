"""Validation of log objects: what ``POST /v1/request`` accepts, and the columns kept of each.

- :func:`validate_batch` turns a decoded body into :class:`Record` objects, or raises
  :class:`InvalidLogError` naming the first problem (nothing is stored then). Validation
  also encodes each log as the JSON text to store, so that whatever cannot be stored (a
  string holding a lone UTF-16 surrogate, nesting too deep to encode) is an invalid log,
  not a failed insert.
- The *endpoint* of a log is ``METHOD /route`` when the SDK sent the matched route
  template (``_route``), else its method and path with id-like segments (numbers, UUIDs,
  long hexadecimal or token-like strings) replaced by ``{id}``: ``GET /items/42`` and
  ``GET /items/7`` are both ``GET /items/{id}``. An outgoing call's endpoint names its host
  too: ``GET payments.test/charges/{id}``.
- The HAR entry's extension fields (docs/protocol.md) become columns: ``_route``,
  ``_weight`` (1 / the sample rate that kept the log), ``_direction``, ``_parent``,
  ``_metadata`` and the type of ``_exception``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

try:  # a dependency on CPython; the standard library's json elsewhere
    import orjson
except ImportError:  # pragma: no cover - PyPy
    orjson = None  # type: ignore[assignment]

Log = dict[str, Any]


class InvalidLogError(ValueError):
    """A log object (or the batch) does not follow the wire format; the message says why."""


class StorageClosedError(RuntimeError):
    """:meth:`Storage.insert` after :meth:`Storage.close` (the collector is stopping)."""


# -- validation ------------------------------------------------------------------------

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|(?=[^/]*\d)[A-Za-z0-9_.~-]{20,})$"
)


def parse_time(text: str) -> float:
    """Unix seconds of an ISO 8601 time (``2026-11-21T10:24:01.496Z``; no zone = UTC)."""
    match = _ISO.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 time: {text[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    offset = timedelta(0)
    if zone and zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    start = _minute_start(year, month, day, hour, minute)
    if int(second) > 59:
        raise ValueError("second must be in 0..59")  # as datetime says it (after the fields before)
    seconds = start + int(second) - offset.total_seconds()
    return seconds + (float("0." + fraction) if fraction else 0.0)


@lru_cache(maxsize=1024)
def _minute_start(year: str, month: str, day: str, hour: str, minute: str) -> float:
    """Unix seconds of a minute's start (logs arrive in time order: a few minutes at a time)."""
    return datetime(int(year), int(month), int(day), int(hour), int(minute), tzinfo=timezone.utc).timestamp()


def endpoint_of(method: str, path: str) -> str:
    """``METHOD /path`` with id-like path segments replaced by ``{id}``."""
    if len(path) <= _CACHED_PATH:
        return _cached_endpoint(method, path)
    return _endpoint(method, path)


#: Paths up to this long have their endpoint cached (an API has few, and ids repeat).
_CACHED_PATH = 200


def _endpoint(method: str, path: str) -> str:
    segments = [("{id}" if _ID_SEGMENT.match(s) else s) for s in path.split("/")]
    return f"{method.upper()} {'/'.join(segments) or '/'}"


_cached_endpoint = lru_cache(maxsize=4096)(_endpoint)


@dataclass(frozen=True)
class Record:
    """One validated log object and the columns extracted from it."""

    id: str
    started: float
    method: str
    url: str
    path: str
    endpoint: str
    status: int
    duration_ms: float
    group_id: str
    group_label: str
    client_ip: str
    log: Log
    text: str  # the log as stored: compact JSON, valid UTF-8
    route: str | None = None  # the matched route template (``_route``)
    weight: float = 1.0  # ``_weight``: how many requests this log stands for
    direction: str = "incoming"  # or "outgoing" (``_direction``): a call the app made
    parent: str | None = None  # ``_parent``: the incoming request's log id
    host: str = ""  # the URL's host (and port)
    metadata: dict[str, Any] | None = None  # ``_metadata``
    exception_type: str | None = None  # ``_exception.type``

    @property
    def metadata_text(self) -> str | None:
        """``metadata`` as compact JSON (valid UTF-8: it is part of ``text``), or None."""
        if self.metadata is None:
            return None
        return json.dumps(self.metadata, ensure_ascii=False, separators=(",", ":"))


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidLogError(f"{where} must be a JSON object")
    return value


def _string(value: Any, where: str, *, limit: int = 100_000) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidLogError(f"{where} must be a non-empty string")
    if len(value) > limit:
        raise InvalidLogError(f"{where} is longer than {limit} characters")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidLogError(f"{where} must be a number >= 0")
    try:
        number = float(value)  # OverflowError for an int beyond a float's range (10**400)
    except OverflowError:
        raise InvalidLogError(f"{where} is too large") from None
    if not math.isfinite(number) or number < 0:
        raise InvalidLogError(f"{where} must be a number >= 0")
    return number


def _optional_string(value: Any, where: str, limit: int) -> str | None:
    return None if value is None else _string(value, where, limit=limit)


def _extension(value: Any, check: Any, default: Any) -> Any:
    """An extension field's value if ``check`` accepts it, else ``default``: a log whose
    ``_route``, ``_weight``, ``_metadata``... is odd is stored whole all the same (the
    field kept as sent in the log, left out of the columns), never refused for it."""
    try:
        return default if value is None else check(value)
    except InvalidLogError:
        return default


#: The largest ``_weight`` taken (a sample rate of one in a billion): sums of weights stay
#: finite whatever is posted (two ``1e308`` would make the figures infinite).
MAX_WEIGHT = 1e9


def _weight(value: Any) -> float:
    weight = _number(value, "_weight")
    if not 0 < weight <= MAX_WEIGHT:
        raise InvalidLogError(f"_weight must be > 0 and at most {MAX_WEIGHT:g}")
    return weight


def _direction(value: Any) -> str:
    if value not in ("incoming", "outgoing"):
        raise InvalidLogError("_direction must be 'incoming' or 'outgoing'")
    return str(value)


def _exception_type(value: Any) -> str | None:
    return _optional_string(_object(value, "_exception").get("type"), "_exception.type", 1000)


def _stored_text(log: Log) -> str:
    """The JSON text to store; :class:`InvalidLogError` if it cannot be stored as UTF-8.

    orjson encodes it when it can (five times faster; the same compact text, and the
    parser has refused NaN and the infinities already); what it refuses (a lone
    surrogate, an integer beyond 64 bits, deep nesting) goes to the standard library,
    which stores it or says why not.
    """
    if orjson is not None:
        try:
            return orjson.dumps(log).decode("utf-8")
        except (TypeError, orjson.JSONEncodeError):
            pass
    try:
        text = json.dumps(log, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidLogError("a string holds a lone UTF-16 surrogate (not valid Unicode)") from None
    except RecursionError:
        raise InvalidLogError("the log is nested too deeply") from None
    except ValueError as exc:  # NaN or Infinity (the server's JSON parser refuses them already)
        raise InvalidLogError(str(exc)) from None
    return text


def record_of(log: Any) -> Record:
    """Validate one log object and extract its columns (raises :class:`InvalidLogError`)."""
    log = _object(log, "the log")
    log_id = _string(log.get("_id"), "_id", limit=256)
    group = _object(log.get("group"), "group")
    group_id = _string(group.get("id"), "group.id", limit=1000)
    label = group.get("label")
    har = _object(_object(log.get("request"), "request").get("log"), "request.log")
    entries = har.get("entries")
    if not isinstance(entries, list) or not entries:
        raise InvalidLogError("request.log.entries must be a non-empty array")
    entry = _object(entries[0], "request.log.entries[0]")
    started_text = _string(entry.get("startedDateTime"), "request.log.entries[0].startedDateTime", limit=64)
    try:
        started = parse_time(started_text)
    except ValueError as exc:
        raise InvalidLogError(f"request.log.entries[0].startedDateTime: {exc}") from None
    duration = _number(entry.get("time"), "request.log.entries[0].time")
    request = _object(entry.get("request"), "request.log.entries[0].request")
    response = _object(entry.get("response"), "request.log.entries[0].response")
    method = _string(request.get("method"), "request.log.entries[0].request.method", limit=64)
    url = _string(request.get("url"), "request.log.entries[0].request.url")
    status = response.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 999:
        raise InvalidLogError("request.log.entries[0].response.status must be an integer from 0 to 999")
    for part, name in ((request, "request"), (response, "response")):
        if not isinstance(part.get("headers", []), list):
            raise InvalidLogError(f"request.log.entries[0].{name}.headers must be an array")
    parts = urlsplit(url)
    path = parts.path or "/"
    client_ip = log.get("clientIPAddress")
    route = _extension(entry.get("_route"), lambda v: _string(v, "_route", limit=1000), None)
    direction = _extension(entry.get("_direction"), _direction, "incoming")
    weight = _extension(entry.get("_weight"), _weight, 1.0)
    metadata = _extension(entry.get("_metadata"), lambda v: _object(v, "_metadata"), None)
    exception_type = _extension(entry.get("_exception"), _exception_type, None)
    parent = _extension(entry.get("_parent"), lambda v: _string(v, "_parent", limit=256), None)
    host = parts.netloc.rpartition("@")[2].lower()
    endpoint = f"{method.upper()} {route}" if route else endpoint_of(method, path)
    if direction == "outgoing":
        verb, _, rest = endpoint.partition(" ")
        endpoint = f"{verb} {host}{rest}"
    return Record(
        id=log_id,
        started=started,
        method=method.upper(),
        url=url,
        path=path,
        endpoint=endpoint,
        status=status,
        duration_ms=duration,
        group_id=group_id,
        group_label=str(label) if label is not None else "",
        client_ip=str(client_ip) if client_ip is not None else "",
        log=log,
        text=_stored_text(log),
        route=route,
        weight=weight,
        direction=direction,
        parent=parent,
        host=host,
        metadata=metadata,
        exception_type=exception_type,
    )


def validate_batch(payload: Any) -> list[Record]:
    """The records of a ``POST /v1/request`` body; :class:`InvalidLogError` on the first problem."""
    if not isinstance(payload, list):
        raise InvalidLogError("the body must be a JSON array of log objects")
    records = []
    for index, log in enumerate(payload):
        try:
            records.append(record_of(log))
        except InvalidLogError as exc:
            raise InvalidLogError(f"log {index}: {exc}") from None
    return records
