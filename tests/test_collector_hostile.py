"""Hostile or odd input to the collector, each with a clear, contained answer: weights that
would make the figures infinite, gzip bodies of many members, NUL characters in filters and
ids, malformed Basic credentials, bodies that trickle in, a token beyond ASCII. Real
collectors over real HTTP, on SQLite and PostgreSQL where storage is involved."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from readme_metrics.collector import Collector, Storage
from readme_metrics.collector.access import Credentials
from readme_metrics.collector.storage import open_storage
from tests.collector_rig import auth, make_log, post, request

NewDb = Callable[[str], str]


@pytest.fixture
def served(new_db: NewDb) -> Iterator[Collector]:
    with Collector(open_storage(new_db("hostile"))) as c:
        yield c


def test_huge_weights_cannot_make_the_figures_infinite(served: Collector) -> None:
    logs = [make_log(), make_log()]
    for log in logs:
        log["request"]["log"]["entries"][0]["_weight"] = 1e308
    assert post(served.url, logs, key="k") == (202, {"accepted": 2, "stored": 2})
    status, summary = request(served.url + "/api/summary")
    assert status == 200 and summary["total"] == 2  # stored whole, each counted once
    status, text = request(served.url + "/metrics")
    assert status == 200 and "+Inf" not in json.dumps(text).replace('le=\\"+Inf\\"', "")


def test_a_gzip_body_of_many_members_is_refused_at_once(served: Collector) -> None:
    one = json.dumps([make_log()]).encode()
    two_members = gzip.compress(one[:10]) + gzip.compress(one[10:])
    headers = {"Content-Encoding": "gzip"}
    assert post(served.url, None, key="k", raw=two_members, headers=headers) == (202, {"accepted": 1, "stored": 1})
    began = time.monotonic()
    status, answer = post(served.url, None, key="k", raw=gzip.compress(b"") * 200_000, headers=headers)
    assert status == 400 and "members" in answer["error"]
    assert time.monotonic() - began < 10  # (it took minutes, member by member)


@pytest.mark.parametrize(
    "path",
    ["/api/logs?q=%00", "/api/summary?endpoint=a%00b", "/api/logs?meta_key=%00", "/api/outgoing?parent=x%00"],
)
def test_a_nul_in_a_filter_is_a_400(served: Collector, path: str) -> None:
    status, answer = request(served.url + path)
    assert status == 400 and "NUL" in answer["error"]


def test_a_nul_in_an_id_matches_nothing(served: Collector) -> None:
    assert request(served.url + "/api/logs/a%00b")[0] == 404
    status, har = request(served.url + "/api/export.har?ids=a%00b")
    assert status == 200 and har["log"]["entries"] == []


@pytest.mark.parametrize("credentials", ["Basic é", "Basic !!!", "Basic"])
def test_malformed_basic_credentials_get_401(served: Collector, credentials: str) -> None:
    data = json.dumps([make_log()]).encode()
    headers = {"Content-Type": "application/json", "Authorization": credentials}
    status, answer = request(served.url + "/v1/request", data=data, headers=headers)
    assert status == 401 and "error" in answer


def test_a_trickling_body_gets_408_within_the_body_timeout(tmp_path: Path) -> None:
    """One byte at a time, never pausing for the whole timeout: the deadline is for the body."""
    body = json.dumps([make_log()]).encode()
    head = (
        f"POST /v1/request HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth('k')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with Collector(Storage(tmp_path / "t.sqlite3"), max_concurrent_ingests=1, body_timeout=1.0) as c:
        with socket.create_connection(("127.0.0.1", c.port), timeout=10) as slow:
            slow.sendall(head)
            began = time.monotonic()
            answer = b""
            for byte in body:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    break
                slow.settimeout(0.25)
                try:
                    answer += slow.recv(65536)
                except TimeoutError:
                    continue
                if answer:
                    break
            slow.settimeout(10)
            answer += b"".join(iter(lambda: slow.recv(65536), b""))
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert time.monotonic() - began < 5
        assert post(c.url, [make_log()], key="k") == (202, {"accepted": 1, "stored": 1})


def test_a_token_beyond_ascii_is_accepted_as_sent() -> None:
    token = "tökén-secret"
    credentials = Credentials.of(token, None)
    header = "Bearer " + token.encode("utf-8").decode("latin-1")  # what the server hands over
    assert credentials.accepts(header)
    assert not credentials.accepts("Bearer " + "tokén-secret".encode().decode("latin-1"))
    assert not credentials.accepts("Bearer \u0100")  # not a byte: never a match, never an error
