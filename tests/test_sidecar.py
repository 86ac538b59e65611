"""The delivery process (``readme_metrics._sidecar``): what it adds, and where it steps aside.

The retry, batching and shutdown rules are those of the in-process client and are tested
in both modes by ``tests/test_delivery.py``. Here: the capture's trip through the pipe,
logs that survive the app's process being killed or never closing, a delivery process that
dies, and the cases that keep delivery in the app's process (mask hook, another package
version on disk). Every test runs the real child process against the real stand-in.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import signal
import time
import uuid
from collections import UserDict
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client as WerkzeugClient

from readme_metrics import MetricsApiConfig, MetricsMiddleware, _sidecar
from readme_metrics.capture import BodyCopy, Capture
from readme_metrics.har import ANONYMOUS_GROUP, build_group
from tests.apps import delivery_app
from tests.integration import request_body, response_body
from tests.servers import uvicorn
from tests.standin import MetricsStandIn, entry, header_value, wait_until

QUEUED_ENV = {"RM_BUFFER_LENGTH": "50", "RM_FLUSH_INTERVAL": "60"}  # events wait in the queue


@pytest.fixture
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello " + environ.get("HTTP_X_TEST_ID", "").encode()]


@contextlib.contextmanager
def wrapped(config: MetricsApiConfig) -> Iterator[Any]:
    """``hello`` wrapped with ``config``; its client closed at the end."""
    middleware = MetricsMiddleware(hello, config)
    try:
        yield middleware
    finally:
        middleware.client.close(2)


def get(middleware: Any, test_id: str) -> None:
    """One request (its capture is submitted as the response closes)."""
    with WerkzeugClient(middleware).get("/", headers={"X-Test-Id": test_id}):
        pass


def arrived_ids(api: MetricsStandIn) -> list[str]:
    return [
        next(h["value"] for h in entry(log)["request"]["headers"] if h["name"].lower() == "x-test-id")
        for log in api.logs
    ]


# -- the capture on the wire ---------------------------------------------------------------


def test_a_capture_crosses_the_pipe_unchanged() -> None:
    request_body, response_body = BodyCopy(8), BodyCopy(1 << 20)
    request_body.add(b"0123456789")  # cut at the limit: 10 bytes seen, 8 kept
    response_body.add(bytes(range(256)))
    capture = Capture(
        "POST",
        "https",
        "ex\u00e4mple.test:8443",
        "/p\u00e4th",
        "q=1&q=2",
        "HTTP/2",
        None,
        [(b"x-raw", b"\xff\x00"), (b"x-raw", b"again")],
        request_body,
        response_body,
        group={"api_key": "k", "label": "\u00e9"},
    )
    capture.response_started(201, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], "Created")
    capture.finish(False, ValueError("boom"))
    bodies = {
        name: (body.data, body.size, body.limit, body.truncated)
        for name, body in (("request_body", request_body), ("response_body", response_body))
    }
    stream = io.BytesIO(b"".join(_sidecar.capture_frames(capture)))
    frame = _sidecar._read_frame(stream)
    assert frame is not None and frame[0] == b"C" and _sidecar._read_frame(stream) is None
    back = _sidecar._capture_of(*frame[1:])
    for name in (*_sidecar._FIELDS, "group"):
        assert getattr(back, name) == getattr(capture, name), name
    for name, expected in bodies.items():
        theirs = getattr(back, name)
        assert (theirs.data, theirs.size, theirs.limit, theirs.truncated) == expected
    # The copies were handed over: what the app adds later changes nothing that was sent.
    response_body.add(b"late")
    assert response_body.kept == 0 and response_body.size == 256 + 4


class _Trickle(io.RawIOBase):
    """A pipe that gives at most ``step`` bytes per read, as a real one may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._step if size < 0 else min(size, self._step)
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


def test_the_reader_cuts_small_and_large_frames_between_control_frames() -> None:
    def capture(size: int, path: str) -> Capture:
        response = BodyCopy(1 << 20)
        response.add(bytes(range(256)) * (size // 256))
        made = Capture("GET", "http", "h", path, "", "HTTP/1.1", None, [], BodyCopy(8), response, {"api_key": "k"})
        made.response_started(200, [("Content-Type", "application/octet-stream")])
        made.finish(True)
        return made

    sizes = {"/small": 512, "/large": 200 * 1024, "/limit": 1 << 20}
    stream = b"".join(
        [
            *_sidecar.capture_frames(capture(sizes["/small"], "/small")),
            _sidecar._frame(b"Q", (1,)),
            *_sidecar.capture_frames(capture(sizes["/large"], "/large")),
            *_sidecar.capture_frames(capture(sizes["/limit"], "/limit")),
            _sidecar._frame(b"F", (2, 1.0)),
        ]
    )
    got = list(_sidecar._frames(_Trickle(stream, 7000)))
    # Captures come with the control frame they preceded, or alone (b"") at a read's end.
    assert [(kind, meta) for kind, meta, _ in got if kind] == [(b"Q", (1,)), (b"F", (2, 1.0))]
    assert got[-1][0] is None
    raws = [raw for _, _, batch in got for raw in batch]
    assert [len(raw.parts) for raw in raws] == [1, 3, 3]  # large bodies kept apart
    for raw in raws:
        body = raw.parts[-1]
        back = raw.decode()
        assert back.response_body.size == sizes[back.path]
        assert back.response_body.data == (bytes(range(256)) * 4096)[: sizes[back.path]]
        if back.path != "/small":
            assert back.response_body.data is body  # decoded without another copy


def test_the_child_paces_its_work_unless_a_backlog_waits_in_the_pipe() -> None:
    # One read's captures are built in slices of PACE_EVERY with a pause between them,
    # unless they are a backlog: many in one read, or (large captures make few per read)
    # BACKLOG_BYTES or more waiting in the pipe when a pause is due.
    every, items = _sidecar.PACE_EVERY, list(range(_sidecar.PACE_EVERY * 3 + 5))
    read_fd, write_fd = os.pipe()
    try:
        pauses: list[float] = []
        slices = list(_sidecar.paced(items, read_fd, pauses.append))
        assert slices == [items[i : i + every] for i in range(0, len(items), every)]
        assert pauses == [_sidecar.PACE_PAUSE] * 3  # nothing waiting: paced

        pauses.clear()
        many = list(range(_sidecar.PACE_LIMIT))
        assert [x for piece in _sidecar.paced(many, read_fd, pauses.append) for x in piece] == many
        assert pauses == []  # a read of PACE_LIMIT captures

        os.set_blocking(write_fd, False)
        waiting = os.write(write_fd, b"x" * _sidecar.BACKLOG_BYTES)
        assert _sidecar.waiting(read_fd) == waiting == _sidecar.BACKLOG_BYTES
        assert [x for piece in _sidecar.paced(items, read_fd, pauses.append) for x in piece] == items
        assert pauses == []  # behind: built at once

        os.read(read_fd, waiting - 1)  # less than BACKLOG_BYTES waiting: paced again
        assert list(_sidecar.paced(items, read_fd, pauses.append))[-1] == items[3 * every :]
        assert pauses == [_sidecar.PACE_PAUSE] * 3
    finally:
        os.close(read_fd)
        os.close(write_fd)


class _Key:
    def __str__(self) -> str:
        return "key-from-an-object"


@pytest.mark.parametrize(
    "group",
    [
        {"api_key": uuid.UUID(int=7), "label": 42, "email": None},  # not marshallable as is
        UserDict({"id": "mapping-key", "label": "from a Mapping"}),  # a Mapping, not a dict
        {"api_key": _Key(), "label": "Obj"},
        ["not", "a", "mapping"],  # logged as anonymous, with the same warning
        ANONYMOUS_GROUP,
    ],
    ids=["uuid", "mapping", "object", "list", "anonymous"],
)
def test_every_kind_of_group_gives_the_same_log_as_in_process(group: Any) -> None:
    frames = _sidecar.capture_frames(
        Capture("GET", "http", "h", "/", "", "HTTP/1.1", None, [], BodyCopy(0), BodyCopy(0), group=group)
    )
    frame = _sidecar._read_frame(io.BytesIO(b"".join(frames)))
    assert frame is not None
    crossed = _sidecar._capture_of(*frame[1:]).group
    try:
        expected: Any = build_group(group)
    except ValueError as exc:
        with pytest.raises(ValueError) as raised:
            build_group(crossed)
        assert str(raised.value) == str(exc)
    else:
        assert build_group(crossed) == expected


# -- the app's process goes away --------------------------------------------------------


def send(server: Any, wanted: list[str]) -> None:
    import requests

    for test_id in wanted:
        assert requests.get(server.url + "/hello", headers={"X-Test-Id": test_id}, timeout=10).text == "hello"


def test_uvicorn_without_lifespan_delivers_at_sigterm(api: MetricsStandIn) -> None:
    # uvicorn re-raises SIGTERM, so without a lifespan no flush runs in the app's process:
    # the delivery process sees the pipe close and delivers what it holds.
    env = {"README_METRICS_SERVER": api.url, **QUEUED_ENV}
    server = uvicorn("tests.apps.delivery_asgi_app:wrapped", env, "--lifespan", "off")
    wanted = [f"no-lifespan-{i}" for i in range(20)]
    send(server, wanted)
    time.sleep(0.3)  # handed over (at most 0.05 s after each event), still queued (50 > 20)
    assert api.logs == []
    output = server.stop()
    wait_until(lambda: len(api.logs) == len(wanted), what="the events of the stopped server")
    assert sorted(arrived_ids(api)) == sorted(wanted), output


def test_a_killed_app_process_loses_nothing_it_had_handed_over(api: MetricsStandIn) -> None:
    env = {"README_METRICS_SERVER": api.url, **QUEUED_ENV}
    server = uvicorn("tests.apps.delivery_asgi_app:wrapped", env)
    wanted = [f"killed-{i}" for i in range(10)]
    send(server, wanted)
    time.sleep(0.3)
    server.proc.kill()  # SIGKILL: no code runs in the app's process
    server.stop()
    wait_until(lambda: len(api.logs) == len(wanted), what="the events of the killed server")
    assert sorted(arrived_ids(api)) == sorted(wanted)


# -- the delivery process goes away, or cannot be used --------------------------------------


def test_a_dead_delivery_process_is_counted_replaced_then_given_up(
    api: MetricsStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    config = MetricsApiConfig("test-api-key", delivery_app.group, metrics_server=api.url, flush_interval=0.01)
    pids = []
    with wrapped(config) as middleware:
        for n in range(_sidecar.MAX_DEATHS):
            get(middleware, f"before-death-{n}")
            assert middleware.client.flush(10)
            pid = middleware.stats()["delivery_process"]
            assert pid is not None and pid not in pids
            pids.append(pid)
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: middleware.client._sidecar is None or middleware.client._sidecar.closed)
        with caplog.at_level(logging.WARNING, logger="readme_metrics"):
            get(middleware, "in-process")
            assert middleware.client.flush(10)
        # Three deaths: the app's process now delivers by itself, and says so.
        assert "delivering from the app's process from now on" in caplog.text
        stats = middleware.stats()
        assert stats["delivery_process"] is None
        assert stats["sent"] == _sidecar.MAX_DEATHS + 1 and stats["waiting"] == 0
        assert arrived_ids(api) == [f"before-death-{n}" for n in range(_sidecar.MAX_DEATHS)] + ["in-process"]


def test_events_handed_to_a_process_that_dies_are_counted(api: MetricsStandIn) -> None:
    config = MetricsApiConfig("test-api-key", delivery_app.group, metrics_server=api.url, buffer_length=50)
    with wrapped(config) as middleware:
        for n in range(3):
            get(middleware, f"held-{n}")
        wait_until(lambda: middleware.client._sidecar is not None and middleware.client._sidecar.handed == 3)
        os.kill(middleware.stats()["delivery_process"], signal.SIGKILL)
        wait_until(lambda: middleware.client._sidecar is None or middleware.client._sidecar.closed)
        assert not middleware.client.flush(5)  # what it held is lost, and the flush says so
        stats = middleware.stats()
        assert stats["dropped"] == {"delivery_process_died": 3} and stats["waiting"] == 0
        get(middleware, "after")
        assert middleware.client.flush(10)  # a new delivery process takes over
        assert arrived_ids(api) == ["after"]


def test_a_mask_hook_keeps_delivery_in_the_app_process(api: MetricsStandIn) -> None:
    def mask(log: dict[str, Any]) -> dict[str, Any]:
        log["clientIPAddress"] = "masked-here"
        return log

    config = MetricsApiConfig("test-api-key", delivery_app.group, metrics_server=api.url, mask=mask)
    with wrapped(config) as middleware:
        get(middleware, "masked")
        assert middleware.client.flush(10)
        assert middleware.stats()["delivery_process"] is None
        assert [log["clientIPAddress"] for log in api.logs] == ["masked-here"]


def test_another_package_version_on_disk_falls_back_to_the_app_process(
    api: MetricsStandIn, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As after an upgrade in place: the child would import another version than the app's.
    monkeypatch.setattr(_sidecar, "__version__", "0.0.0-running")
    config = MetricsApiConfig("test-api-key", delivery_app.group, metrics_server=api.url)
    with wrapped(config) as middleware:
        with caplog.at_level(logging.WARNING, logger="readme_metrics"):
            get(middleware, "fallback")
            assert middleware.client.flush(20)
        assert "cannot start the delivery process (another package version)" in caplog.text
        assert middleware.stats()["delivery_process"] is None
        assert arrived_ids(api) == ["fallback"]


def test_delivery_process_false_keeps_the_worker_thread(api: MetricsStandIn) -> None:
    config = MetricsApiConfig("test-api-key", delivery_app.group, metrics_server=api.url, delivery_process=False)
    with wrapped(config) as middleware:
        get(middleware, "thread")
        assert middleware.client.flush(10)
        assert middleware.stats()["delivery_process"] is None and arrived_ids(api) == ["thread"]


# -- found in review: a body that grows after submit, the close deadline, the transport ----


def make_capture(n: int) -> Capture:
    request_body, response_body = BodyCopy(1 << 20), BodyCopy(1 << 20)
    response_body.add(b"ok")
    capture = Capture(
        "GET", "http", "h.test", f"/p{n}", "", "HTTP/1.1", None, [("X-Test-Id", f"c-{n}")], request_body, response_body
    )
    capture.group = {"api_key": "k"}
    capture.response_started(200, [("Content-Type", "text/plain")], "OK")
    capture.finish(True)
    return capture


def test_a_body_added_to_after_submit_does_not_break_the_pipe(api: MetricsStandIn) -> None:
    # An app may read its request body after the response (a WSGI app in a background
    # thread): the frame handed over must not change, or the stream would be out of step.
    client = _sidecar_client(api)
    try:
        first = make_capture(0)
        first.request_body.add(b"a" * 10)
        first.request_body.add(b"b" * 10)  # two chunks: the copy is a bytearray now
        client.submit(first)
        first.request_body.add(b"LATE" * 5)  # before the worker writes it
        for n in range(1, 20):
            client.submit(make_capture(n))
        assert client.flush(10)
        stats = client.stats()
        assert stats["sent"] == 20 and stats["dropped"] == {} and stats["waiting"] == 0
        assert sorted(arrived_ids(api)) == sorted(f"c-{n}" for n in range(20))
        (log,) = [log for log in api.logs if entry(log)["request"]["url"].endswith("/p0")]
        assert entry(log)["request"]["postData"]["text"] == "a" * 10 + "b" * 10
    finally:
        client.close(2)


def test_close_keeps_to_its_deadline_with_a_delivery_process(api: MetricsStandIn) -> None:
    from readme_metrics.retry import Retry

    client = _sidecar_client(api, metrics_server="http://127.0.0.1:9", retry=Retry(backoff_factor=60, jitter=0))
    try:
        for n in range(20):
            client.submit(make_capture(n))
        wait_until(lambda: client.stats()["last_error"] is not None, what="the first failed post")
        for timeout in (0.0, 0.5):
            client.submit(make_capture(99))
            started = time.monotonic()
            client.close(timeout)
            assert time.monotonic() - started < timeout + 0.25
        stats = client.stats()
        assert stats["sent"] == 0 and stats["waiting"] == 0
        assert stats["queued"] == sum(stats["dropped"].values()) == 22
    finally:
        client.close(1)


def test_set_transport_on_a_running_client_sends_what_follows_there(api: MetricsStandIn) -> None:
    from readme_metrics.testing import MemoryTransport

    client = _sidecar_client(api)
    try:
        client.submit(make_capture(0))
        assert client.flush(10) and client.stats()["delivery_process"] is not None
        memory = MemoryTransport()
        client.set_transport(memory)
        client.submit(make_capture(1))
        assert client.flush(10)
        assert arrived_ids(api) == ["c-0"] and len(memory.logs) == 1
        assert client.stats()["delivery_process"] is None and client.stats()["sent"] == 2
    finally:
        client.close(2)


def test_a_retry_subclass_keeps_delivery_in_the_app_process(api: MetricsStandIn) -> None:
    from readme_metrics.retry import Retry

    class MyRetry(Retry):
        pass

    client = _sidecar_client(api, retry=MyRetry())
    try:
        client.submit(make_capture(0))
        assert client.flush(10)
        assert client.stats()["delivery_process"] is None and arrived_ids(api) == ["c-0"]
    finally:
        client.close(2)


def _sidecar_client(api: MetricsStandIn, **options: Any) -> Any:
    from readme_metrics.delivery import Client

    options.setdefault("metrics_server", api.url)
    return Client(MetricsApiConfig("test-api-key", delivery_app.group, **options))


def test_a_burst_larger_than_a_paced_slice_arrives_whole_and_counted(api: MetricsStandIn) -> None:
    # The child builds one read's captures in slices of PACE_EVERY (pausing between them):
    # every capture of a burst is built, delivered once and counted, whatever the slicing.
    count = _sidecar.PACE_EVERY * 3 + 5
    assert count < _sidecar.PACE_LIMIT  # one read of them is paced, not a backlog
    client = _sidecar_client(api, buffer_length=count)
    try:
        for n in range(count):
            assert client.submit(make_capture(n))
        assert client.flush(20)
        stats = client.stats()
        assert stats["delivery_process"] is not None
        assert (stats["queued"], stats["sent"], stats["waiting"], stats["dropped"]) == (count, count, 0, {})
        assert sorted(arrived_ids(api)) == sorted(f"c-{n}" for n in range(count))
    finally:
        client.close(2)


def child_environ(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as environ:
        return environ.read().split(b"\0")


def test_large_binary_bodies_arrive_whole_from_the_delivery_process(
    api: MetricsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cut apart by the reader (SPLIT_AT), base64-encoded late into the JSON (LATE_AT):
    # the bytes arrive as they were, each log once. The child's malloc gives large
    # blocks back when freed.
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    rng = random.Random(3)
    bodies = {n: (rng.randbytes(70_000 + n), rng.randbytes(300_000 + n)) for n in range(3)}
    client = _sidecar_client(api, buffer_length=len(bodies))
    try:
        for n, (sent, answered) in bodies.items():
            capture = make_capture(n)
            capture.request_headers = [("X-Test-Id", f"c-{n}"), ("Content-Type", "application/octet-stream")]
            capture.response_headers = [("Content-Type", "application/pdf")]
            capture.request_body, capture.response_body = BodyCopy(1 << 20), BodyCopy(1 << 20)
            capture.request_body.add(sent)
            capture.response_body.add(answered)
            assert client.submit(capture)
        assert client.flush(20)
        pid = client.stats()["delivery_process"]
        assert pid is not None
        assert sorted(arrived_ids(api)) == ["c-0", "c-1", "c-2"]
        for log in api.logs:
            n = int(header_value(entry(log)["request"]["headers"], "X-Test-Id")[2:])
            assert request_body(log) == bodies[n][0]
            assert response_body(log) == bodies[n][1]
        assert b"MALLOC_MMAP_THRESHOLD_=131072" in child_environ(pid)
    finally:
        client.close(2)


def test_the_apps_malloc_setting_wins_in_the_delivery_process(
    api: MetricsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    client = _sidecar_client(api)
    try:
        assert client.submit(make_capture(0)) and client.flush(20)
        pid = client.stats()["delivery_process"]
        assert pid is not None
        environ = child_environ(pid)
        assert b"MALLOC_MMAP_THRESHOLD_=65536" in environ
        assert b"MALLOC_MMAP_THRESHOLD_=131072" not in environ
        assert arrived_ids(api) == ["c-0"]
    finally:
        client.close(2)


def test_a_process_dying_mid_write_gets_nothing_twice(api: MetricsStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    # A short write (as when a signal interrupts it) leaves half a chunk in the pipe; the
    # child posts that half and is killed before the rest is written. Only the frames it
    # did not get whole may be delivered again (from the app's process). The short write
    # is the one thing forced here: a real pipe does it only by chance.
    import types

    real_os = os
    state: dict[str, Any] = {"armed": False}

    def writev(fd: int, buffers: list[Any]) -> int:
        if state["armed"] and len(buffers) > 8:
            state["armed"] = False
            state["pause"] = True
            return real_os.writev(fd, buffers[: len(buffers) // 2])
        return real_os.writev(fd, buffers)

    def write(fd: int, data: Any) -> int:
        if state.pop("pause", False):
            wait_until(lambda: api.logs, what="the first half posted")
            real_os.kill(state["pid"], signal.SIGKILL)
            time.sleep(0.3)
        return real_os.write(fd, data)

    fake_os = types.SimpleNamespace(writev=writev, write=write)
    monkeypatch.setattr(_sidecar, "os", types.SimpleNamespace(**{**vars(real_os), **vars(fake_os)}))
    client = _sidecar_client(api, flush_interval=0.01)
    try:
        client.submit(make_capture(-1))
        assert client.flush(10)
        api.logs.clear()
        state["pid"], state["armed"] = client.stats()["delivery_process"], True
        for n in range(40):
            client.submit(make_capture(n))
        assert client.flush(20)
        ids = arrived_ids(api)
        assert len(ids) == len(set(ids)) and set(ids) <= {f"c-{n}" for n in range(40)}  # none twice
        assert {f"c-{n}" for n in range(20, 40)} <= set(ids)  # the half it never got, sent from here
        # What a killed process did since its last report (at most 0.2 s) is unknown: those
        # events count as lost even if they arrived, never as sent twice.
        stats = client.stats()
        assert stats["sent"] + stats["dropped"].get("delivery_process_died", 0) == 41 and stats["waiting"] == 0
    finally:
        client.close(2)
