"""The collector's store on both engines (SQLite and a real PostgreSQL server): schema
versions and migrations, several collectors sharing one database, retention in batches,
and the figures of issues 16 and 17 (routes, weights, metadata, outgoing calls).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from readme_metrics.collector import Collector
from readme_metrics.collector.storage import (
    SCHEMA_VERSION,
    Filters,
    Storage,
    open_storage,
    validate_batch,
)
from tests.collector_rig import collector, get_json, make_log, post, wait_count
from tests.servers import Server, free_port

pytestmark = pytest.mark.timeout(180)

NewDb = Callable[[str], str]


def entry(log: dict[str, Any]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = log["request"]["log"]["entries"]
    return entries[0]


def with_fields(log: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The log with HAR extension fields (``route="/x"`` -> ``_route``) on its entry."""
    entry(log).update({f"_{key}": value for key, value in fields.items()})
    return log


@pytest.fixture
def store(new_db: NewDb) -> Iterator[Storage]:
    storage = open_storage(new_db("store"), max_age_days=None, max_rows=None)
    yield storage
    storage.close()


# -- schema versions ------------------------------------------------------------------

#: A file as readme_metrics 4.0's first collector wrote it (schema version 1).
_V1 = """
CREATE TABLE logs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, received REAL NOT NULL,
    started REAL NOT NULL, method TEXT NOT NULL, url TEXT NOT NULL, path TEXT NOT NULL,
    endpoint TEXT NOT NULL, status INTEGER NOT NULL, duration_ms REAL NOT NULL,
    group_id TEXT NOT NULL, group_label TEXT NOT NULL, client_ip TEXT NOT NULL);
CREATE TABLE bodies (seq INTEGER PRIMARY KEY, log TEXT NOT NULL);
CREATE TRIGGER logs_delete AFTER DELETE ON logs BEGIN DELETE FROM bodies WHERE seq = old.seq; END;
CREATE INDEX logs_started ON logs (started);
CREATE INDEX logs_endpoint ON logs (endpoint, started);
CREATE INDEX logs_status ON logs (status, started);
CREATE INDEX logs_group ON logs (group_id, started);
PRAGMA user_version = 1;
"""


def version_1_file(path: Path, logs: list[dict[str, Any]]) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(_V1)
    for r in validate_batch(logs):
        cursor = conn.execute(
            "INSERT INTO logs (id, received, started, method, url, path, endpoint, status, duration_ms,"
            " group_id, group_label, client_ip) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                r.id,
                time.time(),
                r.started,
                r.method,
                r.url,
                r.path,
                r.endpoint,
                r.status,
                r.duration_ms,
                *(r.group_id, r.group_label, r.client_ip),
            ),
        )
        conn.execute("INSERT INTO bodies (seq, log) VALUES (?, ?)", (cursor.lastrowid, r.text))
    conn.commit()
    conn.close()


def test_a_version_1_sqlite_file_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "v1.sqlite3"
    old = [make_log(url=f"http://api.test/items/{i}", duration_ms=float(i)) for i in range(1, 11)]
    version_1_file(db, old)
    storage = Storage(db, max_age_days=None)
    try:
        # The old logs are all there, as incoming logs of weight 1, and new ones go in beside them.
        assert storage.count() == 10
        assert storage.get(old[3]["_id"]) == old[3]
        new = with_fields(make_log(url="http://api.test/items/abc"), route="/items/{name}", weight=2)
        assert storage.insert(validate_batch([new])) == 1
        endpoints = {e["endpoint"]: e for e in storage.summary(Filters())["endpoints"]}
        assert endpoints["GET /items/{id}"]["count"] == 10 and endpoints["GET /items/{id}"]["p50"] == 5.0
        assert endpoints["GET /items/{name}"]["count"] == 2
    finally:
        storage.close()
    conn = sqlite3.connect(db)
    try:
        assert [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in conn.execute("PRAGMA table_info(logs)")}
        assert {"route", "weight", "direction", "parent", "host", "metadata", "exception_type"} <= columns
        assert conn.execute("SELECT count(*) FROM logs WHERE direction = 'incoming' AND weight = 1").fetchone()[0] == 10
    finally:
        conn.close()
    # Opened again: nothing more to do, the data unchanged.
    again = Storage(db)
    try:
        assert again.count() == 11
    finally:
        again.close()


def test_a_database_of_a_newer_collector_is_refused(new_db: NewDb) -> None:
    db = new_db("newer")
    open_storage(db).close()
    with open_storage(db).engine.reader() as conn:
        conn.run("INSERT INTO schema_version (version, applied) VALUES (?, ?)", [SCHEMA_VERSION + 1, 0.0])
        if conn.dialect.name == "sqlite":
            conn.conn.commit()
    with pytest.raises(RuntimeError, match="newer collector"):
        open_storage(db)


def test_collectors_starting_at_once_migrate_once(new_db: NewDb) -> None:
    db = new_db("race")
    errors: list[BaseException] = []
    stores: list[Storage] = []
    lock = threading.Lock()

    def start() -> None:
        try:
            storage = open_storage(db)
            with lock:
                stores.append(storage)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors and len(stores) == 8
        with stores[0].engine.reader() as conn:
            versions = [v for (v,) in conn.rows("SELECT version FROM schema_version ORDER BY version")]
        assert versions[-1] == SCHEMA_VERSION and len(versions) == len(set(versions))
        logs = [make_log() for _ in range(20)]
        assert sum(s.insert(validate_batch(logs)) for s in stores) == 20
    finally:
        for s in stores:
            s.close()


# -- several collectors, one database -------------------------------------------------


def test_two_collector_processes_share_one_database(new_db: NewDb) -> None:
    """Posts to either, and the same batch to both at once: each log stored once, and
    both dashboards show the same figures."""
    db = new_db("shared")
    one, two = collector(db), collector(db)
    try:
        first = [make_log(url=f"http://api.test/a/{i}") for i in range(30)]
        second = [make_log(url=f"http://api.test/b/{i}", status=500 if i % 3 == 0 else 200) for i in range(30)]
        assert post(one.url, first) == (202, {"accepted": 30, "stored": 30})
        assert post(two.url, second) == (202, {"accepted": 30, "stored": 30})
        # The same batch to both, at once, several times (a retry to another host).
        same = [make_log(url=f"http://api.test/c/{i}") for i in range(50)]
        answers: list[tuple[int, Any]] = []
        threads = [threading.Thread(target=lambda u=u: answers.append(post(u, same))) for u in (one.url, two.url) * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(a[0] for a in answers) == [202] * 6
        assert sum(a[1]["stored"] for a in answers) == 50
        for base in (one.url, two.url):
            body = wait_count(base, 110)
            assert body["total"] == 110 and len({row["id"] for row in body["logs"]}) == 110
        summaries = [get_json(base, "/api/summary") for base in (one.url, two.url)]
        for s in summaries:
            s.pop("series")  # relative to "now"
            assert s.pop("as_of") <= time.time()  # when each took its snapshot
        assert summaries[0] == summaries[1]
        assert (summaries[0]["total"], summaries[0]["errors"], summaries[0]["stored"]) == (110, 10, 110)
    finally:
        one.stop()
        two.stop()


def test_retention_runs_in_batches_with_two_collectors_pruning_at_once(new_db: NewDb) -> None:
    db = new_db("prune")
    # (No pruning on insert: prune_interval is long.)
    stores = [open_storage(db, max_age_days=1, max_rows=None, prune_batch=7, prune_interval=1e12) for _ in range(2)]
    try:
        now = time.time()
        old = [make_log(started=now - 3 * 86400 - i) for i in range(120)]
        fresh = [make_log(started=now - 60 + i * 0.1) for i in range(40)]
        for start in range(0, 160, 40):
            stores[0].insert(validate_batch((old + fresh)[start : start + 40]))
        deleted: list[int] = []
        threads = [threading.Thread(target=lambda s=s: deleted.append(s.prune(now))) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(deleted) and sum(deleted) == 120  # each row deleted once, whoever did it
        assert stores[1].count() == 40
        with stores[1].engine.reader() as conn:
            assert conn.one("SELECT count(*) FROM bodies")[0] == 40  # the bodies went with their rows
        # max_rows, by both at once: the newest 15 stay.
        for s in stores:
            s.max_age_days, s.max_rows = None, 15
        threads = [threading.Thread(target=s.prune) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        kept = {row["id"] for row in stores[0].logs(Filters(), limit=100)}
        # (The order of the logs within one batch is the engine's: PostgreSQL inserts a
        # batch in id order, so that two collectors lock ids in the same order.)
        assert len(kept) == 15 and kept <= {log["_id"] for log in fresh}
        with stores[0].engine.reader() as conn:
            assert conn.one("SELECT count(*) FROM bodies")[0] == 15
    finally:
        for s in stores:
            s.close()


# -- issue 16: routes, weights, metadata ----------------------------------------------


def test_endpoints_are_grouped_by_route_when_the_sdk_sends_one(store: Storage) -> None:
    logs = [
        with_fields(make_log(url=f"http://api.test/users/{name}"), route="/users/{username}")
        for name in ("ada", "grace", "alan")
    ]
    logs.append(make_log(url="http://api.test/users/ada"))  # no route: the path is guessed
    logs.append(make_log(url="http://api.test/orders/12345"))
    store.insert(validate_batch(logs))
    endpoints = {e["endpoint"]: e["count"] for e in store.summary(Filters())["endpoints"]}
    assert endpoints == {"GET /users/{username}": 3, "GET /users/ada": 1, "GET /orders/{id}": 1}
    rows = store.logs(Filters(endpoint="GET /users/{username}"))
    assert len(rows) == 3 and {r["route"] for r in rows} == {"/users/{username}"}


def weighted_nearest_rank(values: list[tuple[float, float]], p: int) -> float:
    """Reference: ascending durations, the first whose cumulative weight reaches p % of the total."""
    total = sum(w for _, w in values)
    cumulative = 0.0
    for duration, weight in sorted(values):
        cumulative += weight
        if cumulative * 100 >= p * total:
            return duration
    raise AssertionError("unreachable")


def test_counts_error_rates_and_percentiles_are_weighted(store: Storage) -> None:
    base = time.time() - 100
    logs = [
        make_log(url="http://api.test/w", duration_ms=10.0, started=base),
        make_log(url="http://api.test/w", duration_ms=20.0, started=base + 1),
        with_fields(make_log(url="http://api.test/w", duration_ms=30.0, status=503, started=base + 2), weight=8),
    ]
    store.insert(validate_batch(logs))
    s = store.summary(Filters())
    (row,) = s["endpoints"]
    # Unweighted, p50 would be 20 ms and the error rate 1 in 3.
    assert row == {"endpoint": "GET /w", "count": 10, "errors": 8, "p50": 30.0, "p95": 30.0, "p99": 30.0}
    assert (s["total"], s["errors"], s["logs"]) == (10, 8, 3)
    assert s["statuses"] == {"200": 2, "503": 8} and s["classes"] == {"2xx": 2, "5xx": 8}
    assert sum(p["2xx"] + p["5xx"] for p in s["series"]["points"]) == 10
    assert s["groups"][0]["count"] == 10 and s["groups"][0]["errors"] == 8
    assert store.count(Filters()) == 3  # the log list counts stored logs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.tuples(st.integers(0, 500).map(float), st.sampled_from([1.0, 2.0, 4.0, 10.0, 2.5, 1 / 0.3])),
        min_size=1,
        max_size=40,
    )
)
def test_weighted_percentiles_match_the_reference(store: Storage, values: list[tuple[float, float]]) -> None:
    path = f"/p/case-{uuid.uuid4().hex[:8]}"  # not id-like: its own endpoint
    logs = [
        with_fields(make_log(url=f"http://api.test{path}", duration_ms=d), **({"weight": w} if w != 1 else {}))
        for d, w in values
    ]
    store.insert(validate_batch(logs))
    (row,) = store.summary(Filters(endpoint=f"GET {path}"))["endpoints"]
    for p in (50, 95, 99):
        assert row[f"p{p}"] == weighted_nearest_rank(values, p), p
    assert row["count"] == pytest.approx(sum(w for _, w in values))


def test_the_log_list_filters_by_a_metadata_key_and_value(new_db: NewDb) -> None:
    with Collector(open_storage(new_db("meta"))) as c:
        tagged = [
            with_fields(make_log(), metadata={"tenant": "acme", "plan": "pro", "seats": 42, "beta": True}),
            with_fields(make_log(), metadata={"tenant": "acme", "plan": "free"}),
            with_fields(make_log(), metadata={"tenant": "globex", "region": "eu"}),
            make_log(),
        ]
        assert post(c.url, tagged)[0] == 202

        def ids(query: str) -> set[str]:
            return {row["id"] for row in get_json(c.url, f"/api/logs?{query}")["logs"]}

        assert ids("meta_key=tenant&meta_value=acme") == {tagged[0]["_id"], tagged[1]["_id"]}
        assert ids("meta_key=tenant&meta_value=acme&q=pro") == {tagged[0]["_id"]}
        assert ids("meta_key=seats&meta_value=42") == {tagged[0]["_id"]}
        assert ids("meta_key=beta&meta_value=true") == {tagged[0]["_id"]}
        assert ids("meta_key=region") == {tagged[2]["_id"]}  # any value
        assert ids("meta_key=tenant&meta_value=initech") == set()
        assert get_json(c.url, "/api/summary?meta_key=tenant&meta_value=acme")["total"] == 2
        assert get_json(c.url, f"/api/logs/{tagged[0]['_id']}") == tagged[0]


def test_extension_fields_of_the_wrong_type_are_left_out_of_the_columns_not_refused() -> None:
    """No input makes a log disappear: an odd extension field is kept in the stored log as
    sent, and the columns take their defaults."""
    for fields, column, default in [
        ({"weight": 0}, "weight", 1.0),
        ({"weight": "2"}, "weight", 1.0),
        ({"weight": -3}, "weight", 1.0),
        ({"direction": "sideways"}, "direction", "incoming"),
        ({"metadata": ["a"]}, "metadata", None),
        ({"route": 7}, "route", None),
        ({"parent": ""}, "parent", None),
        ({"exception": "boom"}, "exception_type", None),
    ]:
        log = with_fields(make_log(), **fields)
        (record,) = validate_batch([log])
        assert getattr(record, column) == default, fields
        assert record.log == log
    (good,) = validate_batch([with_fields(make_log(), weight=4, route="/items/{id}", direction="outgoing")])
    assert (good.weight, good.route, good.direction) == (4.0, "/items/{id}", "outgoing")


# -- issue 17: outgoing calls ---------------------------------------------------------


def outgoing(parent: str | None, url: str, started: float, **kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"direction": "outgoing"}
    if parent:
        fields["parent"] = parent
    return with_fields(make_log(url=url, started=started, **kw), **fields)


def test_outgoing_calls_are_apart_from_the_apis_figures_and_tied_to_their_request(new_db: NewDb) -> None:
    with Collector(open_storage(new_db("calls"))) as c:
        t = time.time() - 50
        incoming = make_log(url="http://api.test/checkout", started=t, duration_ms=300.0)
        calls = [
            outgoing(incoming["_id"], "https://pay.test/charges/123456", t + 0.2, method="POST", duration_ms=120.0),
            outgoing(incoming["_id"], "https://stock.test/items/9", t + 0.1, duration_ms=20.0),
            outgoing(incoming["_id"], "https://pay.test/charges/99999", t + 0.25, method="POST", status=502),
        ]
        other = make_log(url="http://api.test/health", started=t + 1)
        stray = outgoing(None, "https://stock.test/items/10", t + 2, duration_ms=40.0)
        assert post(c.url, [*calls, incoming, other, stray])[0] == 202

        # The API's own figures count incoming requests only.
        s = get_json(c.url, "/api/summary")
        assert s["total"] == 2 and {e["endpoint"] for e in s["endpoints"]} == {"GET /checkout", "GET /health"}
        assert get_json(c.url, "/api/logs")["total"] == 2
        assert get_json(c.url, "/api/logs?direction=all")["total"] == 6

        # The calls one request made, in time order.
        children = c.storage.children(incoming["_id"])
        assert [r["id"] for r in children] == [calls[1]["_id"], calls[0]["_id"], calls[2]["_id"]]
        assert {r["direction"] for r in children} == {"outgoing"} and children[0]["parent"] == incoming["_id"]
        listed = get_json(c.url, f"/api/logs?parent={incoming['_id']}")["logs"]
        assert {r["id"] for r in listed} == {call["_id"] for call in calls}

        # The outgoing view: by endpoint (host included) and by host.
        out = get_json(c.url, "/api/summary?direction=outgoing")
        assert out["total"] == 4
        by_endpoint = {e["endpoint"]: (e["count"], e["errors"]) for e in out["endpoints"]}
        assert by_endpoint == {"POST pay.test/charges/{id}": (2, 1), "GET stock.test/items/{id}": (2, 0)}
        summary = c.storage.outgoing_summary(Filters())
        assert summary["total"] == 4
        hosts = {h["host"]: h for h in summary["hosts"]}
        assert hosts["pay.test"]["count"] == 2 and hosts["pay.test"]["errors"] == 1
        assert (hosts["stock.test"]["p50"], hosts["stock.test"]["p99"]) == (20.0, 40.0)
        assert {e["endpoint"] for e in summary["endpoints"]} == set(by_endpoint)
        # A time range applies to the outgoing view too.
        assert c.storage.outgoing_summary(Filters(since=t + 1.5))["total"] == 1


def test_filters_refuse_unknown_directions_and_a_value_without_a_key() -> None:
    assert Filters.from_query({"direction": "OUTGOING"}).direction == "outgoing"
    with pytest.raises(ValueError, match="direction"):
        Filters.from_query({"direction": "up"})
    with pytest.raises(ValueError, match="meta_key"):
        Filters.from_query({"meta_value": "acme"})
    assert Filters.from_query({"meta_key": "k", "meta_value": "v", "parent": "p"}) == Filters(
        meta_key="k", meta_value="v", parent="p"
    )


def test_text_with_nul_characters_is_stored(store: Storage) -> None:
    """PostgreSQL text cannot hold NUL; JSON can (the columns get U+FFFD, the log stays whole)."""
    log = with_fields(make_log(url="http://api.test/nul\u0000x", label="A\u0000B"), metadata={"k": "v\u0000"})
    assert store.insert(validate_batch([log])) == 1
    assert store.get(log["_id"]) == json.loads(json.dumps(log))
    assert store.count(Filters(q="nul")) == 1


# -- the command line -----------------------------------------------------------------


def test_the_database_can_come_from_the_environment(postgres_server: Any) -> None:
    url = postgres_server.new_database("env")
    with_password = url.replace("postgres@", "postgres:hunter2@")  # trust auth: any password does
    port = free_port()
    srv = Server(
        [sys.executable, "-m", "readme_metrics", "serve", "--port", str(port)],
        port,
        env={"README_METRICS_DB": with_password},
    )
    try:
        assert post(srv.url, [make_log()]) == (202, {"accepted": 1, "stored": 1})
    finally:
        out = srv.stop()
    assert f"storing logs in {url.replace('postgres@', 'postgres:***@')} (0 logs so far)" in out
    assert "hunter2" not in out
    store = open_storage(url)
    try:
        assert store.count() == 1
    finally:
        store.close()


def test_a_database_that_cannot_be_reached_is_an_error_at_start(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "readme_metrics", "serve", "--port", "0", "--db", f"postgresql://x@127.0.0.1:{port}/db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "cannot open the database" in result.stderr and "Traceback" not in result.stderr
