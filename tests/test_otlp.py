"""OtlpExporter against a real OTLP/HTTP receiver on 127.0.0.1 that decodes what it gets
with the ``opentelemetry-proto`` package (``ExportLogsServiceRequest``): protobuf as is,
JSON through protobuf's JSON parser (strict: an unknown or misspelled field fails), with
the trace and span ids turned from OTLP/JSON's hex into bytes first, as receivers do.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from werkzeug.test import Client as WerkzeugClient

from readme_metrics.exporters import OtlpExporter
from readme_metrics.retry import Retry
from tests.apps import delivery_app
from tests.standin import wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    raw: bytes
    request: ExportLogsServiceRequest | None


class Receiver:
    """``POST /v1/logs``: keeps each request, decoded; ``faults`` answer the next posts."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.faults: list[tuple[int, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers = receiver.faults.pop(0) if receiver.faults else (200, {})
                decoded = decode(raw, self.headers.get("Content-Type", "")) if status == 200 else None
                receiver.received.append(Received(time.monotonic(), self.path, dict(self.headers), raw, decoded))
                body = b"{}"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def records(self) -> list[Any]:
        return [
            record
            for item in self.received
            if item.request is not None
            for resource_logs in item.request.resource_logs
            for scope_logs in resource_logs.scope_logs
            for record in scope_logs.log_records
        ]


def decode(raw: bytes, content_type: str) -> ExportLogsServiceRequest:
    message = ExportLogsServiceRequest()
    if content_type == "application/x-protobuf":
        message.ParseFromString(raw)
        return message
    assert content_type == "application/json"
    data = json.loads(raw)
    for resource_logs in data["resourceLogs"]:
        for scope_logs in resource_logs["scopeLogs"]:
            for record in scope_logs["logRecords"]:
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64encode(bytes.fromhex(record[key])).decode()
    return json_format.ParseDict(data, message)


def python(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: python(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [python(v) for v in value.array_value.values]
    return getattr(value, kind)


def attributes(items: Iterator[KeyValue] | Any) -> dict[str, Any]:
    return {kv.key: python(kv.value) for kv in items}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
def test_every_field_arrives_and_redaction_holds(receiver: Receiver, protocol: str) -> None:
    exporter = OtlpExporter(
        receiver.url,
        headers={"X-Token": "t-1"},
        protocol=protocol,
        service_name="orders",
        service_version="1.2.3",
        environment="staging",
    )
    middleware = delivery_app.make(
        metrics_server=receiver.url,
        exporters=[exporter],
        denylist=["password", "x-secret"],
        base_log_url="https://docs.example.test",
    )
    try:
        client = WerkzeugClient(middleware)
        headers = {
            "X-Api-Key": "user-key-4321",
            "User-Agent": "probe/1.0",
            "X-Secret": "s3cr3t",
            "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01",
        }
        with client.post(
            "/upload?password=hunter2&x=1",
            json={"password": "hunter2", "n": 1},
            headers=headers,
            environ_overrides={"REMOTE_ADDR": "203.0.113.7"},
        ):
            pass
        with client.get("/missing", headers={"traceparent": "00-" + "0" * 32 + "-" + SPAN_ID + "-01"}):
            pass
        assert middleware.client.flush(5)
    finally:
        middleware.client.close(1)
    assert all(item.path == "/v1/logs" and item.headers["X-Token"] == "t-1" for item in receiver.received)
    wanted_type = "application/x-protobuf" if protocol == "http/protobuf" else "application/json"
    assert {item.headers["Content-Type"] for item in receiver.received} == {wanted_type}
    assert receiver.received and not any(b"hunter2" in i.raw or b"s3cr3t" in i.raw for i in receiver.received)
    request = receiver.received[0].request
    assert request is not None
    resource = attributes(request.resource_logs[0].resource.attributes)
    assert resource["service.name"] == "orders" and resource["service.version"] == "1.2.3"
    assert resource["deployment.environment"] == "staging"
    assert request.resource_logs[0].scope_logs[0].scope.name == "readme_metrics"

    upload, missing = receiver.records()
    attrs = attributes(upload.attributes)
    assert attrs["http.request.method"] == "POST"
    assert attrs["url.full"].startswith("http://localhost/upload?password=%5BREDACTED") and "x=1" in attrs["url.full"]
    assert attrs["url.path"] == "/upload" and attrs["url.scheme"] == "http"
    assert attrs["http.response.status_code"] == 200
    assert attrs["client.address"] == "203.0.113.7"
    assert attrs["user_agent.original"] == "probe/1.0"
    assert 0 <= attrs["http.server.request.duration"] < 5 and "readme.wait_ms" in attrs
    assert attrs["http.request.body.size"] == len(b'{"password": "hunter2", "n": 1}')
    assert attrs["readme.group.label"] == "Delivery" and attrs["readme.group.id"].endswith("?4321")
    assert "user-key-4321" not in str(attrs)
    assert upload.severity_text == "INFO" and upload.severity_number == 9
    assert abs(upload.time_unix_nano / 1e9 - time.time()) < 30 and upload.observed_time_unix_nano > 0
    assert upload.trace_id.hex() == TRACE_ID and upload.span_id.hex() == SPAN_ID and upload.flags == 1
    # The body is the whole HAR entry, redacted, as JSON text.
    body = json.loads(python(upload.body))
    assert body["request"]["method"] == "POST" and body["response"]["status"] == 200
    assert json.loads(body["request"]["postData"]["text"]) == {"password": "[REDACTED 7]", "n": 1}
    assert {"name": "X-Secret", "value": "[REDACTED 6]"} in body["request"]["headers"]
    # A 404 is a warning; an all-zero trace id is no trace id.
    assert missing.severity_text == "WARN" and attributes(missing.attributes)["http.response.status_code"] == 404
    assert missing.trace_id == b"" and missing.span_id == b""


@pytest.mark.parametrize("status", [429, 503])
def test_retries_honour_retry_after(receiver: Receiver, status: int) -> None:
    receiver.faults = [(status, {"Retry-After": "1"}), (status, {"Retry-After": "1"})]
    middleware = delivery_app.make(
        metrics_server=receiver.url,
        exporters=[OtlpExporter(receiver.url, protocol="http/json")],
        base_log_url="https://docs.example.test",
        retry=Retry(backoff_factor=0.01, backoff_max=0.02),  # only Retry-After makes a long pause
    )
    try:
        with WerkzeugClient(middleware).get("/hello"):
            pass
        wait_until(lambda: len(receiver.records()) == 1, timeout=10)
    finally:
        middleware.client.close(1)
    times = [item.at for item in receiver.received]
    assert len(times) == 3
    assert all(later - earlier >= 0.95 for earlier, later in itertools.pairwise(times))
    stats = middleware.stats()
    assert stats["sent"] == 1 and stats["retried"] == 2 and stats["dropped"] == {}


def test_resource_endpoint_and_headers_from_the_otel_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url + "/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc,x-tenant=acme")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored,deployment.environment=prod,team=core")
    exporter = OtlpExporter()
    assert exporter.url == receiver.url + "/v1/logs"
    log = {"_id": "1", "group": {"id": "g"}, "request": {"log": {"entries": [{"request": {"url": "http://h/p"}}]}}}
    exporter.export([json.dumps(log).encode()], 5.0)
    (item,) = receiver.received
    assert item.headers["authorization"] == "Bearer abc" and item.headers["x-tenant"] == "acme"
    assert item.request is not None
    resource = attributes(item.request.resource_logs[0].resource.attributes)
    assert resource["service.name"] == "billing"  # OTEL_SERVICE_NAME wins over the attributes
    assert resource["deployment.environment"] == "prod" and resource["team"] == "core"
    # Options win over the environment.
    assert OtlpExporter(service_name="x").resource["service.name"] == "x"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:1/custom/logs")
    assert OtlpExporter().url == "http://127.0.0.1:1/custom/logs"
    assert OtlpExporter("http://127.0.0.1:2").url == "http://127.0.0.1:2/v1/logs"


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="protocol"):
        OtlpExporter("http://127.0.0.1:1", protocol="grpc")
    with pytest.raises(ValueError, match="http"):
        OtlpExporter("127.0.0.1:4318")
