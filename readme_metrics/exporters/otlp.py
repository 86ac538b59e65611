"""OpenTelemetry: one log record per exchange, ``POST {endpoint}/v1/logs`` (OTLP/HTTP).

Each record carries the attributes of the OpenTelemetry HTTP semantic conventions that
the log holds (``http.request.method``, ``url.full``, ``url.path``, ``url.scheme``,
``http.response.status_code``, ``client.address``, ``user_agent.original``, ...), the
caller's group (``readme.group.*``), and the whole (redacted) HAR entry as its body, so
nothing is lost; ``trace_id``/``span_id`` come from the request's ``traceparent`` header
when it has a valid one, so logs join traces. Every option and attribute is listed in
``docs/exporters.md``.

``protocol="http/json"`` needs nothing more; ``"http/protobuf"`` needs the
``opentelemetry-proto`` package (``pip install 'readme-metrics[otlp]'``). 429, 502, 503
and 504 answers are retried by the sender, honouring ``Retry-After``; a post has a total
deadline (:class:`readme_metrics.exporters.http.Poster`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from readme_metrics._version import __version__
from readme_metrics.exporters.http import Poster

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a platform without orjson wheels
    _orjson = None  # type: ignore[assignment]

DEFAULT_ENDPOINT = "http://localhost:4318"
PROTOCOLS = ("http/protobuf", "http/json")
_TRACEPARENT = re.compile(r"\A[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")
#: Converting a batch runs in slices of this many seconds, each followed by a pause of
#: ``YIELD_PAUSE`` (as the builder's): a batch of 500 logs is 25-45 ms of work, which in one
#: piece would be 25-45 ms of the app's latency.
YIELD_AFTER = 0.0005
YIELD_PAUSE = 0.00005

# Severity numbers of the logs data model: INFO, WARN, ERROR.
_SEVERITY = ((500, 17, "ERROR"), (400, 13, "WARN"), (0, 9, "INFO"))


def _loads(data: bytes) -> Any:
    return _orjson.loads(data) if _orjson is not None else json.loads(data)


def _dumps(value: Any) -> bytes:
    if _orjson is not None:
        return _orjson.dumps(value)
    return json.dumps(value, separators=(",", ":")).encode()


def _pairs(text: str) -> dict[str, str]:
    """``k1=v1,k2=v2`` (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS``),
    percent-decoded; malformed items are skipped."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs[unquote(key.strip())] = unquote(value.strip())
    return pairs


def any_value(value: Any) -> dict[str, Any]:
    """A JSON value as an OTLP ``AnyValue`` (the JSON mapping of the protocol)."""
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": str(k), "value": any_value(v)} for k, v in value.items()]}}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {}  # null


def _attributes(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in values.items() if value not in (None, "")]


def _unix_nano(text: Any) -> int:
    """``2026-11-21T10:24:01.496Z`` in nanoseconds since the epoch (0 if unreadable)."""
    try:
        return int(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000) * 1_000_000
    except ValueError:
        return 0


class OtlpExporter:
    """Sends logs as OpenTelemetry log records over OTLP/HTTP.

    - ``endpoint``: the receiver's base URL (records go to ``{endpoint}/v1/logs``); default
      ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` (used as is), else
      ``OTEL_EXPORTER_OTLP_ENDPOINT``, else ``http://localhost:4318``.
    - ``headers``: added to each post (over ``OTEL_EXPORTER_OTLP_HEADERS``).
    - ``protocol``: ``"http/protobuf"`` or ``"http/json"``; default
      ``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``http/protobuf`` when ``opentelemetry-proto``
      is installed, else ``http/json``.
    - ``service_name``, ``service_version``, ``environment``: the resource's
      ``service.name``, ``service.version``, ``deployment.environment`` (over
      ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``); ``resource``: more
      resource attributes.
    """

    name = "otlp"

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        protocol: str | None = None,
        service_name: str | None = None,
        service_version: str | None = None,
        environment: str | None = None,
        resource: Mapping[str, Any] | None = None,
    ) -> None:
        env = os.environ
        if endpoint:
            url = endpoint.rstrip("/") + "/v1/logs"
        elif env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
            url = env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"]
        else:
            url = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/") + "/v1/logs"
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"OtlpExporter: the endpoint must be an http(s) URL, got {url!r}")
        self.url = url
        protocol = protocol or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or _default_protocol()
        if protocol not in PROTOCOLS:
            raise ValueError(f"OtlpExporter: protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        self._request_type: Any = _protobuf_request_type() if protocol == "http/protobuf" else None
        self.protocol = protocol
        self.headers = {
            **_pairs(env.get("OTEL_EXPORTER_OTLP_HEADERS", "")),
            **(headers or {}),
            "Content-Type": "application/x-protobuf" if self._request_type else "application/json",
            "User-Agent": f"readme-metrics-python@{__version__}",
        }
        attributes: dict[str, Any] = {
            "service.name": "unknown_service:python",
            "telemetry.sdk.name": "readme-metrics",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": __version__,
            **_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", "")),
        }
        if env.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = env["OTEL_SERVICE_NAME"]
        attributes.update(resource or {})
        for key, value in (
            ("service.name", service_name),
            ("service.version", service_version),
            ("deployment.environment", environment),
        ):
            if value:
                attributes[key] = value
        self.resource = attributes
        self.poster = Poster(self.url, self.headers)

    def __repr__(self) -> str:
        return f"OtlpExporter({self.url!r}, protocol={self.protocol!r})"

    def export(self, logs: Sequence[bytes], timeout: float) -> int:
        body = self.encode(logs)
        self.poster.post(body, timeout)
        return len(body)

    def encode(self, logs: Sequence[bytes]) -> bytes:
        """The body of one export request holding ``logs``, in this exporter's protocol."""
        binary = self._request_type is not None
        records: list[dict[str, Any]] = []
        mark = time.perf_counter()
        for log in logs:
            records += self.records(_loads(log), binary_ids=binary)
            if time.perf_counter() - mark > YIELD_AFTER:  # in slices: the app's threads take the GIL between
                time.sleep(YIELD_PAUSE)
                mark = time.perf_counter()
        request = {
            "resourceLogs": [
                {
                    "resource": {"attributes": _attributes(self.resource)},
                    "scopeLogs": [{"scope": {"name": "readme_metrics", "version": __version__}, "logRecords": records}],
                }
            ]
        }
        if not binary:
            return _dumps(request)
        return _protobuf(request, self._request_type()).SerializeToString()  # type: ignore[no-any-return]

    def records(self, log: Mapping[str, Any], *, binary_ids: bool = False) -> list[dict[str, Any]]:
        """The log records (JSON mapping) of one log object: one per HAR entry. Trace and
        span ids are hex (OTLP/JSON), or base64 for the protobuf JSON mapping."""
        group = log.get("group") or {}
        observed = str(time.time_ns())
        records = []
        for entry in (log.get("request") or {}).get("log", {}).get("entries", []):
            request, response = entry.get("request") or {}, entry.get("response") or {}
            headers = {str(h.get("name", "")).lower(): h.get("value") for h in request.get("headers") or []}
            url = str(request.get("url", ""))
            parts = urlsplit(url)
            status = response.get("status")
            code = status if isinstance(status, int) else 0
            number, text = next((n, t) for floor, n, t in _SEVERITY if code >= floor)
            version = str(request.get("httpVersion", ""))
            timings = entry.get("timings") or {}
            attributes = {
                "http.request.method": request.get("method"),
                "url.full": url,
                "url.path": parts.path,
                "url.scheme": parts.scheme,
                "url.query": parts.query,
                "server.address": parts.hostname,
                "http.response.status_code": status,
                "client.address": log.get("clientIPAddress"),
                "user_agent.original": headers.get("user-agent"),
                "network.protocol.version": version.split("/", 1)[1] if "/" in version else None,
                "http.request.body.size": request.get("bodySize"),
                "http.response.body.size": response.get("bodySize"),
                "http.server.request.duration": _seconds(entry.get("time")),
                "readme.wait_ms": timings.get("wait"),
                "readme.receive_ms": timings.get("receive"),
                "readme.log_id": log.get("_id"),
                "readme.development": log.get("development"),
                "readme.group.id": group.get("id"),
                "readme.group.label": group.get("label"),
                "readme.group.email": group.get("email"),
                "readme.direction": entry.get("_direction"),  # "outgoing": a call the app made
                "readme.parent": entry.get("_parent"),
            }
            record: dict[str, Any] = {
                "timeUnixNano": str(_unix_nano(entry.get("startedDateTime"))),
                "observedTimeUnixNano": observed,
                "severityNumber": number,
                "severityText": text,
                # The entry as JSON text: lossless, and ten times cheaper to send than the
                # same tree as nested AnyValues (measured: 290 -> 55 us per log, http/json).
                "body": {"stringValue": _dumps(entry).decode()},
                "attributes": _attributes(attributes),
            }
            match = _TRACEPARENT.match(str(headers.get("traceparent") or "").strip())
            if match and match.group(1).strip("0") and match.group(2).strip("0") and match.group(0)[:2] != "ff":
                trace_id, span_id, flags = match.groups()
                if binary_ids:
                    trace_id = base64.b64encode(bytes.fromhex(trace_id)).decode()
                    span_id = base64.b64encode(bytes.fromhex(span_id)).decode()
                record.update(traceId=trace_id, spanId=span_id, flags=int(flags, 16))
            records.append(record)
        return records

    def shutdown(self) -> None:
        self.poster.close()


def _seconds(milliseconds: Any) -> float | None:
    return milliseconds / 1000 if isinstance(milliseconds, (int, float)) else None


#: The OTLP/JSON keys of an ``AnyValue`` and the protobuf fields they fill.
_VALUE_FIELDS = {
    "stringValue": ("string_value", str),
    "boolValue": ("bool_value", bool),
    "intValue": ("int_value", int),
    "doubleValue": ("double_value", float),
}


def _protobuf(request: Mapping[str, Any], message: Any) -> Any:
    """The request (the OTLP/JSON mapping :meth:`OtlpExporter.encode` builds, with base64
    ids) as a protobuf message, filled field by field: ``json_format.ParseDict`` did the same
    at about 16 times the cost (1,464 against 90 us per log). ``message``: an empty
    ``ExportLogsServiceRequest``, filled and returned."""
    for resource_logs in request["resourceLogs"]:
        out = message.resource_logs.add()
        _fill_attributes(out.resource.attributes, resource_logs["resource"]["attributes"])
        for scope_logs in resource_logs["scopeLogs"]:
            scope = out.scope_logs.add()
            scope.scope.name = scope_logs["scope"]["name"]
            scope.scope.version = scope_logs["scope"]["version"]
            for record in scope_logs["logRecords"]:
                log = scope.log_records.add()
                log.time_unix_nano = int(record["timeUnixNano"])
                log.observed_time_unix_nano = int(record["observedTimeUnixNano"])
                log.severity_number = record["severityNumber"]
                log.severity_text = record["severityText"]
                log.body.string_value = record["body"]["stringValue"]
                _fill_attributes(log.attributes, record["attributes"])
                if "traceId" in record:
                    log.trace_id = base64.b64decode(record["traceId"])
                    log.span_id = base64.b64decode(record["spanId"])
                    log.flags = record["flags"]
    return message


def _fill_attributes(target: Any, attributes: list[dict[str, Any]]) -> None:
    for attribute in attributes:
        (kind, value), *_ = attribute["value"].items()
        field, convert = _VALUE_FIELDS[kind]
        setattr(target.add(key=attribute["key"]).value, field, convert(value))


def _protobuf_request_type() -> Any:
    try:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    except ImportError as exc:
        raise ValueError(
            "OtlpExporter(protocol='http/protobuf') needs opentelemetry-proto: "
            "pip install 'readme-metrics[otlp]' (or use protocol='http/json')"
        ) from exc
    return logs_service_pb2.ExportLogsServiceRequest


def _default_protocol() -> str:
    try:
        _protobuf_request_type()
    except ValueError:
        return "http/json"
    return "http/protobuf"
