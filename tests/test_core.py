"""The shared core: configuration, capture, event builder, the queue's bounds, guarded hooks."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client as WerkzeugClient

from readme_metrics import MetricsApiConfig, MetricsMiddleware
from readme_metrics.build.har import build_log, iso_time, status_text
from readme_metrics.build.redaction import Redactor, mask
from readme_metrics.capture import BodyCopy, Capture
from readme_metrics.delivery import Client
from readme_metrics.testing import MemoryTransport
from readme_metrics.wsgi import WsgiMetricsMiddleware
from tests.standin import Fault, MetricsStandIn, entry, wait_until, with_header


@pytest.fixture
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


def group_of(req: Any) -> dict[str, str]:
    return {"api_key": "module-key-1234", "label": "Module"}


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"buffer_length": 0}, "buffer_length"),
        ({"buffer_length": 2.5}, "buffer_length"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "3"}, "timeout"),
        ({"max_body_bytes": -1}, "max_body_bytes"),
        ({"flush_interval": 0}, "flush_interval"),
        ({"max_queue_events": 0}, "max_queue_events"),
        ({"denylist": "password"}, "denylist"),
        ({"allowlist": [1]}, "allowlist"),
        ({"allowed_http_hosts": [""]}, "allowed_http_hosts"),
        ({"base_log_url": "example.com"}, "base_log_url"),
        ({"metrics_server": "ftp://x"}, "metrics server"),
        ({"buffer_length": 10, "max_batch_events": 5}, "max_batch_events"),
        ({"mask": lambda e: e, "mask_event": lambda e: e}, "mask"),
    ],
)
def test_invalid_settings_raise_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MetricsApiConfig("key", group_of, **kwargs)


@pytest.mark.parametrize("key", ["", "   ", None, 123])
def test_api_key_is_required(key: Any) -> None:
    with pytest.raises(ValueError, match="api_key"):
        MetricsApiConfig(key, group_of)


def test_grouping_function_as_dotted_path() -> None:
    config = MetricsApiConfig("key", "tests.test_core.group_of")
    assert config.grouping_function is group_of
    with pytest.raises(ValueError, match="cannot import"):
        MetricsApiConfig("key", "tests.test_core.no_such_function")
    with pytest.raises(ValueError, match="dotted"):
        MetricsApiConfig("key", "nodots")


def test_deprecated_aliases_and_compat_attributes() -> None:
    with pytest.warns(DeprecationWarning):
        config = MetricsApiConfig("key", group_of, blacklist=["password"], whitelist=["id"])
    assert config.denylist == ("password",) and config.DENYLIST == ["password"]
    assert config.allowlist == ("id",)
    assert config.README_API_KEY == "key" and config.BUFFER_LENGTH == 1
    assert "secret-key" not in repr(MetricsApiConfig("secret-key-abcd", group_of))


def test_positional_arguments_keep_their_meaning() -> None:
    config = MetricsApiConfig("key", group_of, "https://docs.example.com/", 10, True, False, ["a"], ["b"])
    assert config.base_log_url == "https://docs.example.com"
    assert config.buffer_length == 10
    assert config.development_mode is True
    assert config.background_worker_mode is False
    assert config.allowlist == ("a",) and config.denylist == ("b",)


def test_metrics_server_environment_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MetricsApiConfig("key", group_of).metrics_server == "https://metrics.readme.io"
    assert MetricsApiConfig("key", group_of, metrics_server="http://a:1/").metrics_server == "http://a:1"
    monkeypatch.setenv("README_METRICS_SERVER", "http://127.0.0.1:9")
    assert MetricsApiConfig("key", group_of, metrics_server="http://a:1").metrics_server == "http://127.0.0.1:9"


# -- capture and builder ---------------------------------------------------------------


def test_body_copy_is_bounded_and_keeps_the_true_size() -> None:
    body = BodyCopy(10)
    for chunk in (b"12345", b"", b"67890abc", b"def"):
        body.add(chunk)
    assert body.data == b"1234567890"
    assert body.size == 16 and body.truncated


def make_capture(**overrides: Any) -> Capture:
    fields: dict[str, Any] = {
        "method": "POST",
        "scheme": "https",
        "host": "api.example.com",
        "path": "/v1/things",
        "query": "q=1",
        "http_version": "HTTP/1.1",
        "client_address": "203.0.113.7",
        "request_headers": [("Content-Type", "application/json"), ("Accept", "*/*")],
        "request_body": BodyCopy(1024),
        "response_body": BodyCopy(1024),
        "group": {"api_key": "abcdef-1234", "label": "Acme", "email": "dev@acme.test"},
    }
    fields.update(overrides)
    return Capture(**fields)


def test_log_object_matches_the_wire_spec() -> None:
    capture = make_capture(started_at=1795256641.4961)
    capture.request_body.add(b'{"a": [1, 2]}')
    capture.response_started(200, [("Content-Type", "application/json")])
    capture.response_body.add(b'{"ok": true}')
    capture.finish(completed=True)
    log = build_log(capture, Redactor(), development=True)
    uuid.UUID(log["_id"], version=4)
    assert log["_version"] == 3 and log["development"] is True
    digest = base64.b64encode(hashlib.sha512(b"abcdef-1234").digest()).decode()
    assert log["group"] == {"id": f"sha512-{digest}?1234", "label": "Acme", "email": "dev@acme.test"}
    har = log["request"]["log"]
    assert har["version"] == "1.2" and har["creator"]["name"] == "readme-metrics (python)"
    assert re.fullmatch(r".+-.+/\d+\.\d+\.\d+.*", har["creator"]["comment"])
    e = entry(log)
    assert e["startedDateTime"] == "2026-11-21T10:24:01.496Z"  # the spec's own example
    assert e["request"]["url"] == "https://api.example.com/v1/things?q=1"
    assert e["request"]["postData"] == {"mimeType": "application/json", "text": '{"a": [1, 2]}'}
    assert e["response"]["content"] == {"size": 12, "mimeType": "application/json", "text": '{"ok": true}'}
    assert set(e["timings"]) == {"send", "wait", "receive"}
    assert e["request"]["headersSize"] == -1 and e["cache"] == {}


def test_truncated_body_is_marked_and_keeps_its_real_size() -> None:
    capture = make_capture(request_body=BodyCopy(4), request_headers=[("Content-Type", "text/plain")])
    capture.request_body.add(b"0123456789")
    capture.finish(completed=True)
    request = entry(build_log(capture, Redactor(), development=False))["request"]
    assert request["bodySize"] == 10
    assert request["postData"]["text"] == "0123"
    assert request["postData"]["_truncated"] is True


def test_status_text_and_iso_time() -> None:
    assert status_text(404, None) == "Not Found"
    assert status_text(299, None) == ""
    assert status_text(200, "Fine") == "Fine"
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"


def test_mask_keeps_last_four_only() -> None:
    masked = mask("super-secret-key-WXYZ")
    assert masked.endswith("?WXYZ") and "super-secret" not in masked


# -- delivery bounds -------------------------------------------------------------------


def test_full_queue_drops_and_counts_without_blocking(api: MetricsStandIn) -> None:
    # The stand-in holds the first post for 3 s; meanwhile the queue (2 events) fills up.
    api.faults.append(Fault(status=200, delay=3))
    config = MetricsApiConfig("test-api-key", group_of, metrics_server=api.url, max_queue_events=2, timeout=10)
    client = Client(config)
    client.submit(make_capture(request_headers=[("X-Test-Id", "first")]))
    # The worker took it (nothing queued, one event waiting): the post is held by the API.
    wait_until(lambda: (client.stats()["queue_bytes"], client.stats()["waiting"]) == (0, 1), what="first post sent")
    results: list[bool] = []
    submitter = threading.Thread(
        target=lambda: results.extend(
            client.submit(make_capture(request_headers=[("X-Test-Id", f"n{i}")])) for i in range(6)
        )
    )
    submitter.start()
    submitter.join(timeout=1)
    assert not submitter.is_alive(), "submit blocked on a full queue"
    assert results == [True, True, False, False, False, False]
    assert client.stats()["dropped"] == {"queue_full": 4}
    assert client.flush(timeout=10)
    assert len(api.logs) == 3
    client.close()


def test_background_mode_off_sends_synchronously(api: MetricsStandIn) -> None:
    config = MetricsApiConfig(
        "test-api-key", group_of, metrics_server=api.url, background_worker_mode=False, buffer_length=2
    )
    client = Client(config)
    client.submit(make_capture())
    assert api.logs == []  # waits for buffer_length
    client.submit(make_capture())
    assert len(api.logs) == 2  # sent before submit returned
    assert client.queue.worker is None
    # flush() sends a partial buffer at once.
    client.submit(make_capture(request_headers=[("X-Test-Id", "partial")]))
    assert api.matching(with_header("X-Test-Id", "partial")) == []
    assert client.flush(timeout=5) is True
    assert len(api.matching(with_header("X-Test-Id", "partial"))) == 1
    stats = client.stats()
    assert stats["queued"] == stats["sent"] == 3 and stats["waiting"] == 0 and stats["batches_sent"] == 2


def test_background_mode_off_counts_a_failed_delivery_without_retrying(api: MetricsStandIn) -> None:
    api.faults.append(Fault(503))
    config = MetricsApiConfig(
        "test-api-key", group_of, metrics_server=api.url, background_worker_mode=False, buffer_length=2
    )
    client = Client(config)
    client.submit(make_capture())
    client.submit(make_capture())  # the one try fails: no retry pause in the app's thread
    assert [p.status for p in api.posts] == [503] and api.logs == []
    stats = client.stats()
    assert stats["dropped"] == {"delivery_error": 2} and stats["batches_failed"] == 1 and stats["retried"] == 0
    assert "503" in stats["last_error"] and stats["waiting"] == 0


# -- guarded hooks, in process ---------------------------------------------------------


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.mark.parametrize("hook", ["grouping_function", "skip", "mask"])
def test_a_hook_that_raises_does_not_break_the_app(
    api: MetricsStandIn, hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*_: Any) -> Any:
        raise RuntimeError(f"{hook} exploded")

    kwargs: dict[str, Any] = {"metrics_server": api.url, hook: boom}
    config = MetricsApiConfig("test-api-key", kwargs.pop("grouping_function", group_of), **kwargs)
    middleware = MetricsMiddleware(hello_app, config)
    assert isinstance(middleware, WsgiMetricsMiddleware)
    with WerkzeugClient(middleware).get("/", headers={"X-Test-Id": hook}) as response:
        assert response.status_code == 200 and response.data == b"hello"
    assert middleware.client.flush(timeout=5)
    assert "exploded" in caplog.text
    logs = api.matching(with_header("X-Test-Id", hook))
    if hook == "mask":
        assert logs == [] and middleware.client.stats()["dropped"] == {"mask_error": 1}
    else:
        assert len(logs) == 1
    middleware.client.close()


def test_dispatch_tells_wsgi_from_asgi() -> None:
    from readme_metrics._middleware import is_asgi_app

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        pass

    class AsgiObject:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            pass

    assert is_asgi_app(asgi_app) and is_asgi_app(AsgiObject())
    assert not is_asgi_app(hello_app)


def test_json_encoding_is_the_same_with_and_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    from readme_metrics.build import encode

    capture = make_capture(request_headers=[("Content-Type", "application/json"), ("X-Name", "Zoë 日本")])
    capture.request_body.add('{"city": "Zürich", "n": 1}'.encode())
    capture.finish(completed=True)
    logs: list[dict[Any, Any]] = [build_log(capture, Redactor(), development=False), {"big": 2**70, 1: "non-str key"}]
    assert encode._orjson is not None, "orjson is a dependency"
    fast = [encode.dumps(log) for log in logs]
    monkeypatch.setattr(encode, "_orjson", None)
    slow = [encode.dumps(log) for log in logs]
    assert [json.loads(x) for x in fast] == [json.loads(x) for x in slow]
    assert "Zürich".encode() in slow[0] and "日本".encode() in fast[0]  # UTF-8, not \\u escapes


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "json"])
def test_non_finite_numbers_are_written_as_null(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    from readme_metrics.build import encode

    if not fast:
        monkeypatch.setattr(encode, "_orjson", None)
    nan, inf = float("nan"), float("inf")
    data = encode.dumps({"a": nan, "b": [inf, -inf, 1.5], "c": {"d": (nan,)}})

    def strict(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    assert json.loads(data, parse_constant=strict) == {"a": None, "b": [None, None, 1.5], "c": {"d": [None]}}


def test_a_batch_is_a_json_array_and_an_unencodable_log_is_counted_alone() -> None:
    from readme_metrics.build import Builder, BuildError
    from readme_metrics.exporters.readme import json_array

    assert json_array([]) == b"[]"
    assert json_array([b'{"a":1}', b'{"b":2}']) == b'[{"a":1},{"b":2}]'
    # A mask hook that returns what JSON cannot hold loses that log only, counted.
    circular: list[Any] = []
    circular.append(circular)
    builder = Builder(Redactor(), mask=lambda log: {**log, "loop": circular} if log["_id"] == "bad" else log)
    good, bad = make_capture(), make_capture()
    for capture in (good, bad):
        capture.finish(completed=True)
    bad.log_id = "bad"
    assert json.loads(builder.encode(good))["_id"] != "bad"
    with pytest.raises(BuildError) as caught:
        builder.encode(bad)
    assert caught.value.reason == "encode_error"
    counted: list[str] = []
    assert builder.encode_or_count(bad, counted.append) is None and counted == ["encode_error"]


def test_an_exception_that_cannot_be_printed_is_reraised_and_logged() -> None:
    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text for you")

    def failing_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise UnprintableError()

    config = MetricsApiConfig("key", group_of)
    sent = MemoryTransport.attach(config)
    with pytest.raises(UnprintableError):
        WerkzeugClient(MetricsMiddleware(failing_app, config)).get("/")
    assert sent.flush()
    (e,) = sent.entries
    assert e["response"]["status"] == 500 and "UnprintableError" in e["comment"]
