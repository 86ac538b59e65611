"""Delivery that loses nothing: retries, backoff, Retry-After, refused keys, outages,
shutdown under gunicorn and uvicorn, fork safety, gzip, self-telemetry, MemoryTransport.

Every test runs the real client against the real ``MetricsStandIn`` (faults injected into
it). Retry semantics are driven in process, through a real HTTP server (werkzeug's) in a
thread, so each test can pick its own policy and read ``stats()``; shutdown and fork
behaviour run under real gunicorn and uvicorn processes.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.test import Client as WerkzeugClient

from readme_metrics import MetricsApiConfig, MetricsMiddleware, _log
from readme_metrics.delivery import BATCH_BYTES
from readme_metrics.retry import RETRYABLE_STATUSES, Retry, parse_retry_after
from readme_metrics.testing import MemoryTransport
from tests.apps import delivery_app
from tests.servers import Server, free_port, gunicorn, uvicorn
from tests.standin import Fault, MetricsStandIn, entry, header_value, wait_until, with_header

FAST = Retry(attempts=10, backoff_factor=0.05, backoff_max=0.2, jitter=0.5)


# -- the Retry value object --------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = Retry(jitter=0)
    assert [policy.backoff(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert policy.backoff(10_000) == 30  # no overflow for absurd retry numbers
    assert Retry(backoff_factor=0.1, backoff_max=1, jitter=0).backoff(5) == 1


def test_jitter_only_shortens_the_pause() -> None:
    policy = Retry(backoff_factor=1, jitter=0.5)
    assert policy.backoff(3, rand=lambda: 0.0) == 4.0
    assert policy.backoff(3, rand=lambda: 0.999999) == pytest.approx(2.0, abs=1e-4)
    samples = [policy.backoff(3) for _ in range(200)]
    assert all(2.0 <= s <= 4.0 for s in samples) and len(set(samples)) > 1


def test_retry_after_parsing() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now + 30, usegmt=True).replace("GMT", "-0000"), now=now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 100, usegmt=True), now=now) == 0.0
    for unreadable in (None, "", "soon", "-5", "1.5", "²"):
        assert parse_retry_after(unreadable) is None, unreadable


def test_wait_honours_retry_after_within_the_cap() -> None:
    policy = Retry(backoff_factor=0.1, jitter=0, retry_after_max=10)
    assert policy.wait(1) == 0.1
    assert policy.wait(1, "5") == 5.0
    assert policy.wait(1, "3600") == 10.0  # capped
    assert policy.wait(5, "1") == 1.6  # the backoff is longer: it wins
    assert policy.wait(1, "not a date") == 0.1


def test_retry_statuses_and_validation() -> None:
    policy = Retry()
    assert policy.statuses == RETRYABLE_STATUSES
    assert all(policy.is_retryable(s) for s in (None, 408, 429, 500, 502, 503, 504, 599))
    assert not any(policy.is_retryable(s) for s in (400, 401, 403, 404, 413))
    assert Retry(statuses=[503]).statuses == frozenset({503})  # type: ignore[arg-type]
    for bad in (
        {"attempts": 0},
        {"attempts": 2.5},
        {"backoff_factor": -1},
        {"jitter": 1.5},
        {"max_age": "1"},
        {"statuses": {401, 503}},
        {"statuses": {99}},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Retry(**bad)
    with pytest.raises(ValueError, match="retry"):
        MetricsApiConfig("key", None, retry=3)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        policy.attempts = 3  # type: ignore[misc]


# -- in process: a real HTTP server in a thread, the real client, the real stand-in -------


class App:
    """The delivery test app behind werkzeug's threaded HTTP server."""

    def __init__(self, metrics_server: str, **settings: Any) -> None:
        self.middleware = delivery_app.make(metrics_server=metrics_server, **settings)
        self.client = self.middleware.client
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, self.middleware, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def get(self, test_id: str, path: str = "/hello") -> requests.Response:
        """One request; returns once its capture reached the client (the server submits it
        as it closes the response, which may be just after the client got it)."""
        before = self.submitted()
        response = requests.get(self.url + path, headers={"X-Test-Id": test_id}, timeout=10)
        assert response.status_code == 200
        wait_until(lambda: self.submitted() > before)
        return response

    def submitted(self) -> int:
        stats = self.client.stats()
        return int(stats["queued"] + stats["dropped"].get("queue_full", 0))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close(timeout=1)


@pytest.fixture
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


@pytest.fixture
def make_app() -> Iterator[Callable[..., App]]:
    """Apps served in this process, delivering from their worker thread; stopped after."""
    apps: list[App] = []

    def make(metrics_server: str, **settings: Any) -> App:
        app = App(metrics_server, **settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop()


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}-{uuid.uuid4().hex[:8]}" for i in range(n)]


def test_ids(logs: list[dict[str, Any]]) -> list[str]:
    """The X-Test-Id of each log's request."""
    return [header_value(entry(log)["request"]["headers"], "X-Test-Id") or "" for log in logs]


test_ids.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def among(wanted: list[str]) -> Callable[[dict[str, Any]], bool]:
    """A predicate: the log's X-Test-Id is one of ``wanted``."""
    return lambda log: test_ids([log])[0] in wanted


def test_first_three_posts_503_every_event_arrives_once(api: MetricsStandIn, make_app: Callable[..., App]) -> None:
    api.faults.extend(Fault(503) for _ in range(3))
    app = make_app(api.url, retry=FAST)
    wanted = ids("503", 5)
    for test_id in wanted:
        app.get(test_id)
    assert app.client.flush(timeout=10)
    assert sorted(test_ids(api.logs)) == sorted(wanted)  # all there, none twice
    assert [p.status for p in api.posts][:3] == [503, 503, 503]
    stats = app.middleware.stats()
    assert stats["retried"] == 3 and stats["sent"] == 5 and stats["dropped"] == {}
    assert stats["batches_failed"] == 0 and stats["waiting"] == 0
    assert "503" in stats["last_error"] and stats["last_success"] > stats["last_error_time"]


@pytest.mark.parametrize("dripping", [1, 5])
def test_an_api_that_drips_its_answer_holds_a_post_no_longer_than_its_timeout(
    api: MetricsStandIn, make_app: Callable[..., App], dripping: int
) -> None:
    # Each answer comes a byte every 0.1 s (3.6 s in all): requests' per-read timeout
    # (0.5 s) never fires. The post is given up at 0.5 s and the batch retried. With more
    # such answers than MAX_ABANDONED (4), posts fail at once until an abandoned one ends:
    # the worker is never held, and the batch arrives once the API answers properly.
    api.faults.extend(Fault(drip=0.1) for _ in range(dripping))
    app = make_app(api.url, retry=Retry(attempts=1000, backoff_factor=0.05, backoff_max=0.1), timeout=0.5)
    started = time.monotonic()
    app.get("drip")
    assert app.client.flush(timeout=15)
    assert test_ids(api.logs) == ["drip"]
    stats = app.client.stats()
    assert stats["sent"] == 1 and stats["retried"] >= dripping
    assert "within 0.5s" in (stats["last_error"] or "")
    # One drip at most holds the batch 0.5 s; five: until the first abandoned one ends.
    assert time.monotonic() - started < (2.5 if dripping == 1 else 7.0)


def test_429_retry_after_is_honoured(api: MetricsStandIn, make_app: Callable[..., App]) -> None:
    api.faults.append(Fault(429, headers={"Retry-After": "1"}))
    app = make_app(api.url, retry=FAST)  # without Retry-After the retry would follow in <= 0.05 s
    app.get("429-a")
    api.wait_for(with_header("X-Test-Id", "429-a"))
    first, second = api.posts[0], api.posts[1]
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0
    assert app.client.stats()["retried"] == 1


def test_api_unreachable_for_5s_then_up_every_event_arrives(make_app: Callable[..., App]) -> None:
    port = free_port()  # nothing listens there yet: connection refused
    app = make_app(f"http://127.0.0.1:{port}", retry=Retry(attempts=100, backoff_factor=0.1, backoff_max=0.5))
    early, late = ids("down-early", 3), ids("down-late", 20)
    for test_id in early:
        app.get(test_id)
    wait_until(lambda: app.client.stats()["retried"] >= 2)
    time.sleep(2.5)
    for test_id in late:  # these wait in the queue behind the batch being retried
        app.get(test_id)
    stats = app.client.stats()
    assert stats["waiting"] == len(early) + len(late) and stats["sent"] == 0
    assert "cannot reach" in stats["last_error"]
    time.sleep(max(0.0, 5.0 - 2.5 - 0.5))
    with MetricsStandIn(port=port) as api:
        assert app.client.flush(timeout=10)
        assert sorted(test_ids(api.logs)) == sorted(early + late)
        # The queue left in a few large batches, not one post per event.
        assert len(api.posts) <= 4
    stats = app.client.stats()
    assert stats["sent"] == 23 and stats["dropped"] == {} and stats["retried"] >= 3


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_one_warning_events_dropped_no_retry_loop(
    api: MetricsStandIn, make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, status: int
) -> None:
    _log._last.pop("unauthorized", None)
    if status == 401:  # the stand-in refuses a key it does not know
        app = make_app(api.url, api_key="a-revoked-key", retry=FAST)
    else:  # a blocked key
        api.faults.extend(Fault(403) for _ in range(3))
        app = make_app(api.url, retry=FAST)
    with caplog.at_level(logging.WARNING, logger="readme_metrics"):
        for test_id in ids("401", 3):
            app.get(test_id)
            assert app.client.flush(timeout=5)
        time.sleep(0.3)  # room for a retry storm, if there were one
    assert [p.status for p in api.posts] == [status] * 3  # one post per batch
    warnings = [r for r in caplog.records if "api_key" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert str(status) in warnings[0].getMessage() and "MetricsApiConfig" in warnings[0].getMessage()
    stats = app.client.stats()
    assert stats["dropped"] == {"unauthorized": 3} and stats["batches_failed"] == 3 and stats["retried"] == 0


def test_given_up_batches_are_counted_by_reason(api: MetricsStandIn, make_app: Callable[..., App]) -> None:
    api.faults.extend(Fault(503) for _ in range(3))
    app = make_app(api.url, retry=Retry(attempts=3, backoff_factor=0.01, jitter=0))
    app.get("exhausted")
    wait_until(lambda: app.client.stats()["batches_failed"] == 1)
    assert len(api.posts) == 3 and api.logs == []
    assert app.client.stats()["dropped"] == {"retries_exhausted": 1}

    api.faults.extend(Fault(503) for _ in range(5))
    old = make_app(api.url, retry=Retry(backoff_factor=0.2, jitter=0, max_age=0.5))
    old.get("too-old")  # tries at 0, 0.2, 0.6 s: the third would pass max_age
    wait_until(lambda: old.client.stats()["batches_failed"] == 1)
    assert old.client.stats()["dropped"] == {"too_old": 1} and len(api.posts) == 3 + 2

    api.faults[:] = [Fault(400)]
    rejected = make_app(api.url, retry=FAST)
    rejected.get("rejected")
    wait_until(lambda: rejected.client.stats()["batches_failed"] == 1)
    assert rejected.client.stats()["dropped"] == {"rejected": 1} and rejected.client.stats()["retried"] == 0


def test_bounded_queue_while_down_everything_is_accounted_for(make_app: Callable[..., App]) -> None:
    port = free_port()
    policy = Retry(attempts=1000, backoff_factor=0.1, backoff_max=0.2)  # holds its batch till the API is back
    app = make_app(f"http://127.0.0.1:{port}", retry=policy, max_queue_events=5)
    wanted = ids("bounded", 12)
    app.get(wanted[0])
    wait_until(lambda: app.client.stats()["last_error"] is not None)  # the worker holds it
    for test_id in wanted[1:]:
        app.get(test_id)
    # One batch in retry + 5 queued; the rest dropped.
    wait_until(lambda: app.client.stats()["dropped"] == {"queue_full": 12 - 6}, what="dropped == {'queue_full': 6}")
    kept = 6
    with MetricsStandIn(port=port) as api:
        assert app.client.flush(timeout=10)
        arrived = test_ids(api.logs)
    assert len(arrived) == len(set(arrived)) == kept and set(arrived) <= set(wanted)
    stats = app.client.stats()
    assert stats["sent"] == kept and stats["sent"] + sum(stats["dropped"].values()) == len(wanted)


def test_close_stops_retrying_at_the_deadline(make_app: Callable[..., App]) -> None:
    port = free_port()
    app = make_app(f"http://127.0.0.1:{port}", retry=Retry(backoff_factor=0.2, backoff_max=0.2))
    for test_id in ids("deadline", 4):
        app.get(test_id)
    wait_until(lambda: app.client.stats()["retried"] >= 1)
    started = time.monotonic()
    app.client.close(timeout=0.5)
    assert time.monotonic() - started < 3  # bounded by the deadline, not by the policy
    stats = app.client.stats()
    assert stats["dropped"].get("shutdown") == 4 and stats["waiting"] == 0


def test_shutdown_cuts_a_long_pause_short_for_a_last_try(make_app: Callable[..., App]) -> None:
    port = free_port()
    app = make_app(f"http://127.0.0.1:{port}", retry=Retry(backoff_factor=60, backoff_max=60, jitter=0))
    app.get("last-try")
    wait_until(lambda: app.client.stats()["last_error"] is not None)
    with MetricsStandIn(port=port) as api:  # the API is back, the worker sleeps for 60 s
        app.client.close(timeout=5)
        assert test_ids(api.logs) == ["last-try"]
    stats = app.client.stats()
    assert stats["sent"] == 1 and stats["retried"] == 1


def test_a_retry_the_deadline_leaves_no_time_for_is_not_counted_as_retried(make_app: Callable[..., App]) -> None:
    port = free_port()
    app = make_app(f"http://127.0.0.1:{port}", retry=Retry(backoff_factor=60, backoff_max=60, jitter=0))
    app.get("no-time")
    wait_until(lambda: app.client.stats()["last_error"] is not None)
    app.client.close(timeout=0)  # the pause ends at once, but no time is left for a try
    wait_until(lambda: app.client.stats()["waiting"] == 0)  # with no grace, counted just after
    stats = app.client.stats()
    assert stats["dropped"] == {"shutdown": 1} and stats["retried"] == 0 and stats["waiting"] == 0


def test_the_client_is_usable_again_after_close(api: MetricsStandIn, make_app: Callable[..., App]) -> None:
    # An ASGI app's lifespan may run more than once in a process (test clients): each
    # shutdown closes the client, and the next events must still be delivered, with retries.
    app = make_app(api.url, retry=FAST)
    app.get("before-close")
    app.client.close(timeout=5)
    assert test_ids(api.logs) == ["before-close"]
    for round_ in range(2):
        api.faults.extend([Fault(503), Fault(503)])
        wanted = ids(f"after-close-{round_}", 3)
        for test_id in wanted:
            app.get(test_id)
        api.wait_for(among(wanted), count=3)
        app.client.close(timeout=5)
    assert [p.status for p in api.posts].count(503) == 4
    stats = app.client.stats()
    assert stats["sent"] == 7 and stats["dropped"] == {} and stats["retried"] >= 4 and stats["waiting"] == 0


def test_close_keeps_to_its_deadline_across_clients(make_app: Callable[..., App]) -> None:
    from readme_metrics import delivery

    port = free_port()  # nothing listens: every client retries until the deadline
    policy = Retry(attempts=1000, backoff_factor=0.05, backoff_max=0.1)
    apps = [make_app(f"http://127.0.0.1:{port}", retry=policy, shutdown_timeout=1) for _ in range(3)]
    for n, app in enumerate(apps):
        app.get(f"deadline-{n}")
    wait_until(lambda: all(app.client.stats()["retried"] >= 1 for app in apps))
    started = time.monotonic()
    delivery.close_all()  # what atexit runs: one deadline for all, not one after the other
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 0.5, f"3 clients with shutdown_timeout=1 took {elapsed:.2f}s to close"
    for app in apps:
        stats = app.client.stats()
        assert stats["dropped"] == {"shutdown": 1} and stats["waiting"] == 0
        worker = app.client.queue.worker
        assert worker is None or not worker.is_alive()  # joined


def test_no_worker_thread_can_start(
    api: MetricsStandIn, make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As at interpreter exit: threading refuses new threads. submit() must not raise into
    # the app, and flush() delivers inline, returning at its deadline (not looping forever).
    api.faults.extend(Fault(200, delay=0.5) for _ in range(3))  # slow but successful posts
    app = make_app(api.url, max_batch_events=1)
    app.get("started")  # a worker is running: stop it, then forbid new ones
    assert app.client.flush(timeout=5)
    app.client.close(timeout=5)
    wait_until(lambda: app.client.queue.worker is None)
    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        if self.name == "readme-metrics-worker":  # the server's own threads still start
            raise RuntimeError("can't create new thread at interpreter shutdown")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    wanted = ids("no-thread", 3)
    for test_id in wanted:
        app.get(test_id)  # served, and queued
    assert app.client.stats()["waiting"] == 3
    result: list[bool] = []
    flusher = threading.Thread(target=lambda: result.append(app.client.flush(timeout=0.2)))
    flusher.start()
    flusher.join(timeout=5)
    assert not flusher.is_alive(), "flush() did not return at its deadline"
    assert result == [False]  # one batch went inline (0.5 s), the deadline passed
    assert app.client.stats()["waiting"] == 2
    assert app.client.flush(timeout=10)
    assert sorted(test_ids(api.logs)) == sorted(["started", *wanted])


def test_an_unexpected_error_is_counted_and_the_worker_goes_on(
    api: MetricsStandIn, make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(api.url)
    real_encode = app.client.builder.encode_or_count

    def broken(*args: Any) -> Any:
        raise KeyError("an SDK bug")

    monkeypatch.setattr(app.client.builder, "encode_or_count", broken)
    with caplog.at_level(logging.ERROR, logger="readme_metrics"):
        app.get("lost")
        wait_until(lambda: app.client.stats()["batches_failed"] == 1)
    assert "unexpected error" in caplog.text and "an SDK bug" in caplog.text
    monkeypatch.setattr(app.client.builder, "encode_or_count", real_encode)
    app.get("after")
    assert app.client.flush(timeout=5)
    assert test_ids(api.logs) == ["after"]
    stats = app.client.stats()
    assert stats["dropped"] == {"internal_error": 1} and stats["sent"] == 1 and stats["waiting"] == 0


def test_gzip_uploads(api: MetricsStandIn, make_app: Callable[..., App]) -> None:
    app = make_app(api.url, compress=True)
    app.get("gzip-1")
    assert app.client.flush(timeout=5)
    post = api.posts[-1]
    # The stand-in gunzipped the body (a body that was not gzip would have been a 400).
    assert post.headers["content-encoding"] == "gzip" and post.status == 200
    assert post.logs is not None and test_ids(post.logs) == ["gzip-1"]
    raw = json.dumps(post.logs, ensure_ascii=False, separators=(",", ":")).encode()
    assert int(post.headers["content-length"]) == app.client.stats()["bytes_sent"] < len(raw)
    # Off by default: plain JSON.
    plain = make_app(api.url)
    plain.get("gzip-off")
    api.wait_for(with_header("X-Test-Id", "gzip-off"))
    assert "content-encoding" not in api.posts[-1].headers
    assert test_ids(api.logs) == ["gzip-1", "gzip-off"]


def test_large_bodies_are_posted_in_batches_of_bounded_size(api: MetricsStandIn, make_app: Callable[..., App]) -> None:
    # Building a batch holds it about four times over (base64, JSON): a batch holds at
    # most BATCH_BYTES of captures, whatever the queue lets wait, and one larger alone.
    app = make_app(api.url, buffer_length=7, flush_interval=30, max_body_bytes=6 << 20)
    sent = ids("big", 8)
    sizes = [1 << 20] * 7 + [5 << 20]
    for test_id, size in zip(sent, sizes, strict=True):
        before = app.submitted()
        response = requests.post(app.url + "/upload", data=b"x" * size, headers={"X-Test-Id": test_id}, timeout=10)
        assert response.text == str(size)
        wait_until(lambda before=before: app.submitted() > before)
    assert app.client.flush(timeout=20)
    posts = [test_ids(post.logs) for post in api.posts if post.logs]
    assert sorted(test_id for post in posts for test_id in post) == sorted(sent)  # each once
    assert BATCH_BYTES == 4 << 20  # three 1 MiB captures (and their overhead) fit, not four
    assert [len(post) for post in posts] == [3, 3, 1, 1]
    assert posts[-1] == [sent[-1]]  # the 5 MiB one alone
    for log in api.logs:
        assert entry(log)["request"]["bodySize"] == sizes[sent.index(test_ids([log])[0])]


def test_stats_fields(api: MetricsStandIn, make_app: Callable[..., App]) -> None:
    app = make_app(api.url)
    before = app.middleware.stats()
    assert set(before) == {
        "queued",
        "waiting",
        "queue_bytes",
        "sent",
        "batches_sent",
        "batches_failed",
        "retried",
        "repaired",
        "bytes_sent",
        "dropped",
        "last_error",
        "last_error_time",
        "last_success",
        "exporters",
    }
    app.get("stats")
    assert app.client.flush(timeout=5)
    after = app.middleware.stats()
    assert after["queued"] == after["sent"] == after["batches_sent"] == 1
    # One exporter (the default): its own counters are the top-level ones.
    assert list(after["exporters"]) == ["readme"]
    assert after["exporters"]["readme"]["sent"] == 1
    assert after["exporters"]["readme"] == {key: value for key, value in after.items() if key != "exporters"}
    assert after["bytes_sent"] == int(api.posts[0].headers["content-length"])
    assert after["last_success"] <= time.time() and after["last_error"] is None
    assert after["repaired"] == 0
    after["dropped"]["x"] = 1  # a snapshot: changing it changes nothing
    assert app.middleware.stats()["dropped"] == {}
    # The ASGI middleware offers the same.
    from tests.apps.delivery_asgi_app import app as asgi_app

    asgi = MetricsMiddleware(asgi_app, MetricsApiConfig("test-api-key", delivery_app.group, metrics_server=api.url))
    assert set(asgi.stats()) == set(before) and asgi.stats()["queued"] == 0


# -- MemoryTransport ----------------------------------------------------------------------


def test_memory_transport_collects_what_would_be_sent() -> None:
    config = MetricsApiConfig("any-key", delivery_app.group, retry=Retry(attempts=2, backoff_factor=0.01))
    sent = MemoryTransport.attach(config)
    middleware = delivery_app.ControlledMiddleware(delivery_app.app, config)
    with WerkzeugClient(middleware).get("/hello?x=1", headers={"X-Api-Key": "user-key-4321"}) as response:
        assert response.data == b"hello"
    assert sent.flush()
    (log,) = sent.logs
    assert sent.entries[0]["request"]["url"] == "http://localhost/hello?x=1"
    assert log["group"]["id"].endswith("?4321") and log["group"]["label"] == "Delivery"
    assert sent.batches == [[log]] and sent.wait_for(1) == [log]

    sent.fail_with = 503  # the API's failures can be simulated too
    with WerkzeugClient(middleware).get("/hello"):
        pass
    wait_until(lambda: middleware.stats()["batches_failed"] == 1)
    assert middleware.stats()["dropped"] == {"retries_exhausted": 1} and middleware.stats()["retried"] == 1
    sent.fail_with = None
    sent.clear()
    assert sent.logs == []
    # Attaching to a middleware works too, and replaces the previous transport.
    again = MemoryTransport.attach(middleware)
    with WerkzeugClient(middleware).get("/pid"):
        pass
    assert len(again.wait_for(1)) == 1 and sent.logs == []
    middleware.client.close(timeout=1)
    with pytest.raises(TypeError):
        MemoryTransport.attach(object())


def test_a_fork_the_hook_missed_is_noticed_at_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    config = MetricsApiConfig("any-key", delivery_app.group)
    sent = MemoryTransport.attach(config)
    middleware = delivery_app.ControlledMiddleware(delivery_app.app, config)
    with WerkzeugClient(middleware).get("/hello"):
        pass
    assert sent.flush() and middleware.stats()["sent"] == 1
    old_worker = middleware.client.queue.worker
    assert old_worker is not None
    middleware.client._pid = -1  # as if forked without os.register_at_fork running
    with WerkzeugClient(middleware).get("/hello"):
        pass
    assert sent.flush() and len(sent.logs) == 2
    assert middleware.stats()["sent"] == 1  # the "child" started with fresh counters
    # (A real fork leaves no old worker behind; here it is one, and it ends quietly.)
    old_worker.join(5)
    assert not old_worker.is_alive() and errors == []
    middleware.client.close(timeout=1)


# -- real servers: the app's latency, SIGTERM, fork ---------------------------------------


def test_app_response_times_unchanged_while_the_api_hangs(api: MetricsStandIn) -> None:
    api.faults.extend(Fault(503, delay=3) for _ in range(2))  # hangs past the 0.5 s timeout
    env = {"README_METRICS_SERVER": api.url, "RM_TIMEOUT": "0.5", "RM_RETRY_BACKOFF": "0.1"}
    server = gunicorn("tests.apps.delivery_app:wrapped", env)
    try:
        wanted = ids("hang", 10)
        for test_id in wanted:
            started = time.monotonic()
            response = requests.get(server.url + "/hello", headers={"X-Test-Id": test_id}, timeout=10)
            assert response.status_code == 200 and response.text == "hello"
            assert time.monotonic() - started < 1.0  # the API hangs for 3 s; the app does not
        api.wait_for(among(wanted), count=len(wanted))
        stats = requests.get(server.url + "/_flush", timeout=15).json()
        assert stats["retried"] >= 2 and stats["sent"] == len(wanted) and stats["dropped"] == {}
        assert "within 0.5s" in stats["last_error"]
    finally:
        server.stop()
    assert sorted(test_ids(api.logs)) == sorted(wanted)


QUEUED_ENV = {"RM_BUFFER_LENGTH": "50", "RM_FLUSH_INTERVAL": "60"}  # events sit in the queue


def send_all(server: Server, wanted: list[str], path: str = "/pid", workers: int = 8) -> list[str]:
    """The requests, concurrently; the response bodies."""

    def one(test_id: str) -> str:
        response = requests.get(server.url + path, headers={"X-Test-Id": test_id}, timeout=10)
        assert response.status_code == 200
        return response.text

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, wanted))


def assert_sigterm_flushes(
    api: MetricsStandIn, server: Server, wanted: list[str], exit_codes: tuple[int, ...] = (0,)
) -> str:
    time.sleep(0.2)
    assert len(api.logs) < len(wanted), "some events should still be queued before SIGTERM"
    output = server.stop()
    assert server.proc.returncode in exit_codes, output
    assert sorted(test_ids(api.logs)) == sorted(wanted), output  # all arrived, once
    assert "not delivered" not in output
    return output


@pytest.mark.parametrize(("worker", "threads"), [("sync", 1), ("gthread", 4)])
def test_sigterm_to_gunicorn_flushes_the_queue(api: MetricsStandIn, worker: str, threads: int) -> None:
    env = {"README_METRICS_SERVER": api.url, **QUEUED_ENV}
    server = gunicorn("tests.apps.delivery_app:wrapped", env, "-k", worker, threads=threads)
    wanted = ids(worker, 20)
    send_all(server, wanted, workers=1 if worker == "sync" else 4)
    assert_sigterm_flushes(api, server, wanted)


def test_gunicorn_preload_4_workers_each_delivers_its_own(api: MetricsStandIn) -> None:
    # buffer_length 100 > the 61 events: every worker still holds all of its own at SIGTERM,
    # and must deliver them itself (a worker posting for another would break the pid check).
    env = {"README_METRICS_SERVER": api.url, **QUEUED_ENV, "RM_BUFFER_LENGTH": "100"}
    server = gunicorn("tests.apps.delivery_app:wrapped", env, "--preload", "-w", "4")
    wanted = ids("preload", 61)
    served_by = set(send_all(server, wanted, "/pid?0.1", workers=12))  # slow: spreads the load
    assert len(served_by) > 1, "requests did not spread over the workers"
    assert_sigterm_flushes(api, server, wanted)
    posted_by = []
    for post in api.posts:
        assert post.logs is not None
        pids = {entry(log)["response"]["content"]["text"] for log in post.logs}
        assert len(pids) == 1  # a worker posts its own events only
        posted_by.append(pids.pop())
    assert set(posted_by) == served_by and len(set(posted_by)) > 1


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_an_asgi_lifespan_run_twice_in_one_process_delivers_both_times(api: MetricsStandIn) -> None:
    # Test clients run the app's lifespan once per `with`: each shutdown closes the client.
    from starlette.testclient import TestClient

    from tests.apps.delivery_asgi_app import app as asgi_app

    config = MetricsApiConfig("test-api-key", delivery_app.group, metrics_server=api.url, retry=FAST)
    wrapped = MetricsMiddleware(asgi_app, config)
    for round_ in range(2):
        api.faults.append(Fault(503))  # each time, the first post fails and is retried
        with TestClient(wrapped) as http:
            assert http.get("/hello", headers={"X-Test-Id": f"lifespan-{round_}"}).text == "hello"
        # The lifespan shutdown has returned: the event was delivered by then.
        assert test_ids(api.logs) == [f"lifespan-{n}" for n in range(round_ + 1)]
    assert [p.status for p in api.posts] == [503, 200, 503, 200]
    stats = wrapped.stats()
    assert stats["sent"] == 2 and stats["retried"] == 2 and stats["dropped"] == {} and stats["waiting"] == 0


def test_sigterm_to_uvicorn_flushes_the_queue(api: MetricsStandIn) -> None:
    env = {"README_METRICS_SERVER": api.url, **QUEUED_ENV}
    server = uvicorn("tests.apps.delivery_asgi_app:wrapped", env)
    wanted = ids("uvicorn", 20)
    send_all(server, wanted, workers=4)
    # uvicorn re-raises the SIGTERM it handled once it has shut down: atexit never runs.
    # What is queued is flushed at lifespan shutdown, by the ASGI middleware.
    assert_sigterm_flushes(api, server, wanted, exit_codes=(0, -signal.SIGTERM))


@pytest.mark.parametrize("api_back", [True, False], ids=["api-back", "api-down"])
def test_sigterm_to_uvicorn_during_a_retry_pause(api: MetricsStandIn, api_back: bool) -> None:
    # The API answers 503; the worker then pauses 15-30 s before its retry. SIGTERM: the
    # lifespan shutdown closes the client, which cuts the pause short for one last try.
    api.faults.extend(Fault(503) for _ in range(1 if api_back else 5))
    env = {"README_METRICS_SERVER": api.url, "RM_RETRY_BACKOFF": "60"}
    server = uvicorn("tests.apps.delivery_asgi_app:wrapped", env)
    try:
        send_all(server, ["uvicorn-retry"], workers=1)
        wait_until(lambda: len(api.posts) == 1, what="the first (failed) post")
        time.sleep(0.2)  # the worker is in its retry pause now
    finally:
        output = server.stop()
    assert server.proc.returncode in (0, -signal.SIGTERM), output
    assert [p.status for p in api.posts] == [503, 200 if api_back else 503], output
    if api_back:  # the last try delivered it
        assert test_ids(api.logs) == ["uvicorn-retry"] and "dropped" not in output
    else:  # or it is counted and reported
        assert api.logs == [] and "1 logs dropped (shutdown)" in output
