"""Outgoing calls (issue 17): real apps under real servers calling a real local service.

A Flask app under gunicorn calls out with ``requests``, a FastAPI app under uvicorn with
``httpx.AsyncClient`` (``tests/apps/outgoing_apps.py``); the metrics stand-in receives both
the incoming logs and the logs of the calls. In-process tests cover what needs no server:
instrumenting and restoring the libraries, the exception object, the routing away from the
hosted API, ``outgoing_hosts``.
"""

from __future__ import annotations

import gc
import gzip
import json
import threading
import weakref
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import requests
import urllib3

from readme_metrics import MetricsApiConfig, outgoing
from readme_metrics.config import DEFAULT_METRICS_SERVER
from readme_metrics.delivery import client_for
from readme_metrics.exporters import MemoryExporter, OtlpExporter, ReadMeExporter
from tests.integration import decode_base64_text, send
from tests.servers import Server, free_port, gunicorn, uvicorn
from tests.standin import MetricsStandIn, entry, header_value, wait_until

LONG = 1024 * 1024  # bytes of /long


class Target:
    """The service the apps call: ``/echo`` answers JSON with a secret and what it got;
    ``/long`` sends 64 KiB of a 1 MiB body, then holds the rest until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/long"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(LONG))
                    self.end_headers()
                    try:
                        self.wfile.write(b"a" * 65536)
                        self.wfile.flush()
                        target.release.wait(30)
                        self.wfile.write(b"b" * (LONG - 65536))
                    except OSError:
                        pass  # the app closed its end
                    return
                if self.path.startswith("/chunked"):  # a chunked, gzip-encoded JSON answer
                    body = gzip.compress(json.dumps({"token": "tok-answer", "n": 1}).encode())
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in (body[:10], body[10:]):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.answer(b"")

            def do_POST(self) -> None:
                self.answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def answer(self, got: bytes) -> None:
                body = json.dumps({"token": "tok-answer", "got": got.decode("utf-8", "replace")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    service = Target()
    yield service
    service.close()


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


@pytest.fixture(scope="module", params=["flask", "fastapi"])
def app(request: Any, api: MetricsStandIn, target: Target) -> Iterator[Server]:
    env = {"README_METRICS_SERVER": api.url, "RM_TARGET": target.url, "RM_CLOSED": f"http://127.0.0.1:{free_port()}"}
    if request.param == "flask":
        server = gunicorn("tests.apps.outgoing_apps:flask_app", env)
    else:
        server = uvicorn("tests.apps.outgoing_apps:fastapi_app", env)
    yield server
    server.stop()


def outgoing_of(api: MetricsStandIn, rid: str, count: int = 1) -> list[dict[str, Any]]:
    def match(log: dict[str, Any]) -> bool:
        found = entry(log)
        return found.get("_direction") == "outgoing" and header_value(found["request"]["headers"], "X-Req-Id") == rid

    return api.wait_for(match, count)


def incoming_of(api: MetricsStandIn, rid: str) -> dict[str, Any]:
    def match(log: dict[str, Any]) -> bool:
        found = entry(log)
        return "_direction" not in found and header_value(found["request"]["headers"], "X-Req-Id") == rid

    return api.wait_for(match)[0]


def settle(api: MetricsStandIn, server: Server) -> None:
    """Everything logged before now has arrived (FIFO: a later request's log came after)."""
    _, sentinel = send(server, "GET", "/ping")
    incoming_of(api, sentinel)


def test_a_call_is_logged_linked_to_its_request_and_redacted(api: MetricsStandIn, app: Server) -> None:
    response, rid = send(app, "POST", "/call", headers={"X-Api-Key": "caller-key-1"})
    assert response.status_line.endswith(b"200 OK") and b"tok-answer" in response.body  # the app got it all
    parent = incoming_of(api, rid)
    (log,) = outgoing_of(api, rid)
    call = entry(log)
    assert call["_parent"] == parent["_id"]
    assert log["group"] == parent["group"]  # the caller's group
    assert "_parent" not in entry(parent) and "_direction" not in entry(parent)
    assert call["request"]["method"] == "POST"
    assert call["request"]["url"].endswith("/echo?token=%5BREDACTED%205%5D")
    sent = json.loads(call["request"]["postData"]["text"])
    assert sent == {"password": "[REDACTED 7]", "token": "[REDACTED 7]", "kept": "visible"}
    assert call["response"]["status"] == 200
    answered = json.loads(call["response"]["content"]["text"])
    assert answered["token"] == "[REDACTED 10]"
    assert call["_completed"] is True


def test_a_streamed_download_stays_streamed_and_unread_bytes_are_not_read(
    api: MetricsStandIn, app: Server, target: Target
) -> None:
    target.release.clear()
    try:
        # The service holds all but the first 64 KiB until released: had anything read the
        # body for the log, the app could not answer before that.
        response, rid = send(app, "GET", "/stream")
        assert response.status_line.endswith(b"200 OK") and int(response.body) > 0
    finally:
        target.release.set()
    call = entry(outgoing_of(api, rid)[0])
    content = call["response"]["content"]
    assert 0 < call["response"]["bodySize"] <= 65536 < LONG  # what the app read, no more
    assert content.get("_truncated") is True and len(decode_base64_text(content)) == 4096  # max_body_bytes
    assert call["_completed"] is False


def test_a_failed_call_is_logged_and_the_app_gets_the_error(api: MetricsStandIn, app: Server) -> None:
    response, rid = send(app, "GET", "/fail")
    error = response.body.decode()
    assert error in ("ConnectionError", "ConnectError")  # the library's own exception reached the app
    call = entry(outgoing_of(api, rid)[0])
    assert call["response"]["status"] == 0
    assert call["_error"] == error and "failed" in call["comment"]
    assert call["_completed"] is False


def test_context_follows_tasks_and_copied_threads_only(api: MetricsStandIn, app: Server) -> None:
    if "gunicorn" in " ".join(app.proc.args):  # type: ignore[arg-type]
        _, rid = send(app, "GET", "/thread")
        parent = incoming_of(api, rid)
        calls = {entry(log)["request"]["url"].rsplit("=", 1)[1]: log for log in outgoing_of(api, rid, 2)}
        assert entry(calls["copied"])["_parent"] == parent["_id"]
        assert "_parent" not in entry(calls["bare"])
        assert calls["bare"]["group"] == {"id": "outgoing", "label": "outgoing"}
    else:
        _, rid = send(app, "GET", "/task")
        parent = incoming_of(api, rid)
        assert entry(outgoing_of(api, rid)[0])["_parent"] == parent["_id"]


def test_skip_outgoing_leaves_calls_out_and_a_failing_hook_does_not(api: MetricsStandIn, app: Server) -> None:
    _, skipped = send(app, "POST", "/call", headers={"X-Skip-Me": "1"})
    _, raising = send(app, "POST", "/call", headers={"X-Hook-Raises": "1"})
    incoming_of(api, skipped)
    assert outgoing_of(api, raising)  # a hook that raises does not skip
    settle(api, app)
    assert not [log for log in api.matching(lambda log: "_direction" in entry(log)) if skipped in json.dumps(log)]


def test_the_sdks_own_calls_are_never_logged(api: MetricsStandIn, app: Server) -> None:
    # Delivery (POST /v1/request) and the project lookup (GET /v1) go to the stand-in, with
    # requests instrumented in the same process: neither may come back as a log.
    send(app, "POST", "/call")
    settle(api, app)
    settle(api, app)
    urls = [entry(log)["request"]["url"] for log in api.matching(lambda log: True)]
    assert urls and not [url for url in urls if url.startswith(api.url)]


# -- the calls share their request's fate (route policies, sampling, filters) -------------


def outgoing_mentioning(api: MetricsStandIn, rid: str) -> list[dict[str, Any]]:
    return api.matching(
        lambda log: (
            entry(log).get("_direction") == "outgoing"
            and header_value(entry(log)["request"]["headers"], "X-Req-Id") == rid
        )
    )


def incoming_mentioning(api: MetricsStandIn, rid: str) -> list[dict[str, Any]]:
    return api.matching(
        lambda log: "_direction" not in entry(log) and header_value(entry(log)["request"]["headers"], "X-Req-Id") == rid
    )


def test_the_calls_of_a_request_not_logged_are_not_logged(api: MetricsStandIn, app: Server) -> None:
    cases = [("/quiet/call", {}), ("/excluded/call", {}), ("/sampled/call", {}), ("/call", {"X-No-Log": "1"})]
    if "uvicorn" in " ".join(app.proc.args):  # type: ignore[arg-type]
        cases.append(("/view-quiet/call", {}))  # @Route(log=False) on the endpoint (FastAPI)
    rids = []
    for path, headers in cases:
        response, rid = send(app, "POST", path, headers=headers)
        assert response.status_line.endswith(b"200 OK") and b"tok-answer" in response.body  # the app got it all
        rids.append(rid)
    settle(api, app)
    for (path, _), rid in zip(cases, rids, strict=True):
        assert not incoming_mentioning(api, rid) and not outgoing_mentioning(api, rid), path


def test_a_request_logged_for_its_outcome_brings_its_calls(api: MetricsStandIn, app: Server) -> None:
    response, rid = send(app, "POST", "/sampled/call?status=503")  # sampled out, kept as a 5xx
    assert response.status_line.split()[1] == b"503"
    parent = incoming_of(api, rid)
    assert "sampled out" in entry(parent)["comment"]
    (call,) = outgoing_of(api, rid)
    assert entry(call)["_parent"] == parent["_id"] and call["group"] == parent["group"]


def test_sampled_calls_follow_their_request_with_its_weight(api: MetricsStandIn, app: Server) -> None:
    rids = [send(app, "POST", "/half/call")[1] for _ in range(30)]
    settle(api, app)
    kept = 0
    for rid in rids:
        parents, calls = incoming_mentioning(api, rid), outgoing_mentioning(api, rid)
        assert len(parents) == len(calls) <= 1  # both or neither
        if parents:
            kept += 1
            assert entry(calls[0])["_parent"] == parents[0]["_id"]
            assert entry(calls[0])["_weight"] == entry(parents[0])["_weight"] == 2.0
    assert 0 < kept < 30  # 2 x 2**-30 odds of failing by chance


def test_a_routes_lists_and_log_body_apply_to_its_calls(api: MetricsStandIn, app: Server) -> None:
    _, rid = send(app, "POST", "/deny/call")
    call = entry(outgoing_of(api, rid)[0])
    sent = json.loads(call["request"]["postData"]["text"])
    assert sent == {"password": "[REDACTED 7]", "token": "[REDACTED 7]", "kept": "[REDACTED 7]"}  # route + app-wide
    _, rid = send(app, "POST", "/nobody/call")
    call = entry(outgoing_of(api, rid)[0])
    assert "postData" not in call["request"] and call["request"]["bodySize"] > 0
    assert call["response"]["content"].get("text", "") == "" and call["response"]["bodySize"] > 0


def test_calls_beyond_those_held_are_sent_at_once_still_linked(api: MetricsStandIn, app: Server) -> None:
    response, rid = send(app, "GET", "/many/call?n=70", timeout=60)  # 64 held, 6 sent at once
    assert response.body == b"ok"
    parent = incoming_of(api, rid)
    calls = outgoing_of(api, rid, 70)
    assert len(calls) == 70 and {entry(call)["_parent"] for call in calls} == {parent["_id"]}


DJANGO = {
    "django-wsgi": (gunicorn, "tests.apps.django_project.wsgi:application"),
    "django-asgi": (uvicorn, "tests.apps.django_project.asgi:application"),
}


@pytest.fixture(scope="module", params=list(DJANGO))
def django_app(request: Any, api: MetricsStandIn, target: Target) -> Iterator[Server]:
    start, app = DJANGO[request.param]
    env = {
        "README_METRICS_SERVER": api.url,
        "RM_TARGET": target.url,
        "DJANGO_SETTINGS_MODULE": "tests.apps.outgoing_django",
    }
    server = start(app, env)
    yield server
    server.stop()


def test_django_calls_follow_the_decisions_made_after_the_view(api: MetricsStandIn, django_app: Server) -> None:
    # Django's grouping function runs after the view: the view's calls wait for it.
    _, rid = send(django_app, "POST", "/call", headers={"X-Api-Key": "caller-key-2"})
    parent = incoming_of(api, rid)
    (call,) = outgoing_of(api, rid)
    assert entry(call)["_parent"] == parent["_id"]
    assert call["group"] == parent["group"] and parent["group"]["id"] != "outgoing"  # the caller's group
    rids = []
    for path, headers in [("/call", {"X-No-Log": "1"}), ("/view-quiet/call", {}), ("/sampled/call", {})]:
        response, rid = send(django_app, "POST", path, headers=headers)
        assert response.status_line.endswith(b"200 OK") and b"tok-answer" in response.body
        rids.append(rid)
    settle(api, django_app)
    for rid in rids:
        assert not incoming_mentioning(api, rid) and not outgoing_mentioning(api, rid)
    _, rid = send(django_app, "POST", "/deny/call")
    sent = json.loads(entry(outgoing_of(api, rid)[0])["request"]["postData"]["text"])
    assert sent["kept"] == "[REDACTED 7]"


# -- in process --------------------------------------------------------------------------


def originals() -> list[Any]:
    return [
        requests.adapters.HTTPAdapter.send,
        httpx.HTTPTransport.handle_request,
        httpx.AsyncHTTPTransport.handle_async_request,
        urllib3.connectionpool.HTTPConnectionPool.urlopen,
    ]


@pytest.fixture
def memory() -> Iterator[tuple[MetricsApiConfig, MemoryExporter]]:
    exporter = MemoryExporter()
    config = MetricsApiConfig("test-api-key", None, exporters=[exporter], flush_interval=0.05, denylist=["token"])
    yield config, exporter
    outgoing.uninstrument()


def test_instrument_twice_is_harmless_and_uninstrument_restores_the_very_functions(
    memory: tuple[MetricsApiConfig, MemoryExporter], target: Target
) -> None:
    config, exporter = memory
    before = originals()
    assert outgoing.instrument(config) == ("requests", "httpx", "urllib3")
    patched = originals()
    assert all(a is not b for a, b in zip(before, patched, strict=True))
    outgoing.instrument(config)
    assert originals() == patched and all(a is b for a, b in zip(originals(), patched, strict=True))
    requests.get(f"{target.url}/echo")
    client_for(config).flush(10)
    assert len(exporter.logs) == 1  # one call, logged once
    outgoing.uninstrument()
    assert all(a is b for a, b in zip(originals(), before, strict=True))
    assert outgoing.instrumented() == ()
    requests.get(f"{target.url}/echo")
    client_for(config).flush(10)
    assert len(exporter.logs) == 1


def test_the_exception_reaches_the_app_unchanged(memory: tuple[MetricsApiConfig, MemoryExporter]) -> None:
    config, exporter = memory
    own = requests.adapters.HTTPAdapter.send
    raised: list[BaseException] = []

    def spy(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return own(self, request, *args, **kwargs)
        except BaseException as exc:
            raised.append(exc)
            raise

    requests.adapters.HTTPAdapter.send = spy  # type: ignore[method-assign]
    try:
        outgoing.instrument(config)
        with pytest.raises(requests.ConnectionError) as caught:
            requests.get(f"http://127.0.0.1:{free_port()}/", timeout=5)
        assert caught.value is raised[0]
        outgoing.uninstrument()
        assert requests.adapters.HTTPAdapter.send is spy
    finally:
        requests.adapters.HTTPAdapter.send = own  # type: ignore[method-assign]
    client_for(config).flush(10)
    assert exporter.entries[0]["response"]["status"] == 0


def test_capture_outgoing_with_only_the_hosted_api_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("README_METRICS_SERVER", raising=False)
    monkeypatch.delenv("README_METRICS_EXPORTERS", raising=False)
    with pytest.raises(ValueError, match=r"hosted API .* never receives the calls your API makes"):
        MetricsApiConfig("k", None, capture_outgoing=True)
    with pytest.raises(ValueError, match="hosted API"):
        MetricsApiConfig("k", None, capture_outgoing=True, exporters=[ReadMeExporter("k", DEFAULT_METRICS_SERVER)])
    with pytest.raises(ValueError, match="hosted API"):
        outgoing.instrument(MetricsApiConfig("k", None))
    monkeypatch.setenv("README_METRICS_EXPORTERS", "readme")
    with pytest.raises(ValueError, match="hosted API"):
        MetricsApiConfig("k", None, capture_outgoing=True)
    monkeypatch.setenv("README_METRICS_EXPORTERS", "readme,jsonl:-")
    assert MetricsApiConfig("k", None, capture_outgoing=True).capture_outgoing
    monkeypatch.delenv("README_METRICS_EXPORTERS")
    assert MetricsApiConfig("k", None, capture_outgoing=True, metrics_server="http://127.0.0.1:8787").capture_outgoing


def test_the_hosted_api_never_receives_outgoing_logs_others_do(target: Target) -> None:
    hosted, memory = ReadMeExporter("test-api-key", DEFAULT_METRICS_SERVER), MemoryExporter()
    config = MetricsApiConfig("test-api-key", None, exporters=[hosted, memory], flush_interval=0.05)
    assert hosted.accepts_outgoing is False and ReadMeExporter("k", "http://127.0.0.1:1").accepts_outgoing
    try:
        outgoing.instrument(config)
        requests.get(f"{target.url}/echo")
        httpx.get(f"{target.url}/echo")
        client = client_for(config)
        memory.wait_for(2)
        wait_until(lambda: client.stats()["exporters"]["readme"]["dropped"].get("outgoing_not_accepted") == 2)
    finally:
        outgoing.uninstrument()
    stats = client.stats()["exporters"]
    assert stats["readme"]["sent"] == 0 and stats["readme"]["batches_failed"] == 0  # never posted
    assert stats["memory"]["sent"] == 2 and not stats["memory"]["dropped"]
    assert all(e["_direction"] == "outgoing" for e in memory.entries)
    record = OtlpExporter("http://127.0.0.1:1").records(memory.logs[0])[0]
    assert {"key": "readme.direction", "value": {"stringValue": "outgoing"}} in record["attributes"]


def test_outgoing_hosts_exact_and_wildcard(target: Target) -> None:
    memory = MemoryExporter()
    config = MetricsApiConfig(
        "test-api-key", None, exporters=[memory], flush_interval=0.05, outgoing_hosts=["localhost", "*.example.test"]
    )
    port = target.url.rsplit(":", 1)[1]
    try:
        outgoing.instrument(config)
        requests.get(f"{target.url}/echo?n=ip")  # 127.0.0.1: not listed
        requests.get(f"http://localhost:{port}/echo?n=name")  # listed (any port)
        for url in ("http://api.example.test:1/?n=sub", "http://example.test:1/?n=bare"):
            with pytest.raises(requests.ConnectionError):
                requests.get(url, timeout=5)
        client_for(config).flush(10)
    finally:
        outgoing.uninstrument()
    logged = sorted(e["request"]["url"].rsplit("=", 1)[1] for e in memory.entries)
    assert logged == ["name", "sub"]


def test_the_sdks_own_calls_are_marked_in_any_thread(target: Target) -> None:
    # The project lookup runs here in the test's own thread (not an SDK thread): the
    # context variable alone keeps it out; the app's own call next to it is logged.
    from readme_metrics.doclink import BaseUrlError, fetch_base_url

    memory = MemoryExporter()
    config = MetricsApiConfig("test-api-key", None, exporters=[memory], metrics_server=target.url)
    try:
        outgoing.instrument(config)
        with pytest.raises(BaseUrlError):
            fetch_base_url(config)  # GET {target}/v1 (answers JSON without baseUrl)
        requests.get(f"{target.url}/echo?mine")
        client_for(config).flush(10)
    finally:
        outgoing.uninstrument()
    assert [e["request"]["url"] for e in memory.entries] == [f"{target.url}/echo?mine"]


def test_chunked_and_compressed_answers_are_logged_whole(
    memory: tuple[MetricsApiConfig, MemoryExporter], target: Target
) -> None:
    # requests hands the app the decoded bytes (the log keeps those); httpx's transport the
    # bytes as sent (the log decodes them): either way the log has the JSON, redacted.
    config, exporter = memory
    outgoing.instrument(config)
    assert requests.get(f"{target.url}/chunked").json()["n"] == 1
    with requests.get(f"{target.url}/chunked", stream=True) as streamed:
        assert b"".join(streamed.iter_content(3)).startswith(b"{")
    assert httpx.get(f"{target.url}/chunked").json()["n"] == 1
    client_for(config).flush(10)
    assert len(exporter.entries) == 3
    for found in exporter.entries:
        assert json.loads(found["response"]["content"]["text"]) == {"token": "[REDACTED 10]", "n": 1}
        assert found["_completed"] is True


def test_an_async_skip_outgoing_hook_skips_nothing_and_says_so(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    async def skip(request: Any) -> bool:
        return True

    memory = MemoryExporter()
    config = MetricsApiConfig("test-api-key", None, exporters=[memory], skip_outgoing=skip)
    try:
        outgoing.instrument(config)
        with caplog.at_level("WARNING", logger="readme_metrics"):
            requests.get(f"{target.url}/echo")
        client_for(config).flush(10)
    finally:
        outgoing.uninstrument()
    assert len(memory.entries) == 1
    assert "skip_outgoing must not be async" in caplog.text


def test_bare_urllib3_calls_are_logged_once_each(
    memory: tuple[MetricsApiConfig, MemoryExporter], target: Target
) -> None:
    # requests goes through urllib3: its calls stay one log each (the other tests count them).
    config, exporter = memory
    outgoing.instrument(config)
    pool = urllib3.PoolManager()
    assert json.loads(pool.request("POST", f"{target.url}/echo?token=q", body=b'{"token": "t"}').data)["got"]
    streamed = pool.request("GET", f"{target.url}/chunked", preload_content=False)
    assert streamed.read(5)  # decoded bytes, read in part
    streamed.release_conn()
    streamed.close()
    with pytest.raises(urllib3.exceptions.MaxRetryError) as caught:
        pool.request("GET", f"http://127.0.0.1:{free_port()}/", retries=1)
    client_for(config).flush(10)
    posted, partial, failed = exporter.entries
    assert posted["request"]["url"] == f"{target.url}/echo?token=%5BREDACTED%201%5D"
    assert json.loads(posted["request"]["postData"]["text"]) == {"token": "[REDACTED 1]"}
    assert json.loads(posted["response"]["content"]["text"])["token"] == "[REDACTED 10]"
    assert partial["_completed"] is False and partial["response"]["bodySize"] > 0
    assert failed["response"]["status"] == 0 and failed["_error"] == type(caught.value).__name__
    assert all(e["_direction"] == "outgoing" for e in exporter.entries)


@pytest.mark.parametrize("library", ["requests", "urllib3"])
def test_an_unread_response_is_freed_by_reference_counting(
    memory: tuple[MetricsApiConfig, MemoryExporter], target: Target, library: str
) -> None:
    # The wrappers put on the urllib3 response must not make a reference cycle: the response
    # (and its socket) goes with its last reference, not at a later garbage collection.
    config, exporter = memory
    outgoing.instrument(config)
    gc.collect()
    gc.disable()
    try:
        if library == "requests":
            response = requests.get(f"{target.url}/echo", stream=True, timeout=10)
            raw = weakref.ref(response.raw)
        else:
            response = urllib3.PoolManager().request("GET", f"{target.url}/echo", preload_content=False)
            raw = weakref.ref(response)
        del response
        assert raw() is None
    finally:
        gc.enable()
    client_for(config).flush(10)
    (call,) = exporter.entries
    assert call["_completed"] is False  # finished, unread, when it was freed
