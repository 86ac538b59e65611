"""The collector's ingest rate and dashboard latency, on SQLite and PostgreSQL.

    .venv/bin/python bench/ingest.py [--seconds 8] [--posters 8] [--batch 100]
                                     [--rows 1000000] [--engines sqlite,postgres] [--json]
    python3 dev.py bench-ingest       # the same, with the defaults

**Ingest.** For each engine, a ``readme-metrics serve`` subprocess (a fresh SQLite file, or
a fresh database on a PostgreSQL server started for the run with its default, durable
settings: ``fsync`` and ``synchronous_commit`` on) receives batches of ``--batch`` typical
logs (about 1.5 KiB each: a dozen headers, JSON bodies both ways) from ``--posters``
concurrent processes, each on one kept-alive connection, for ``--seconds``. Printed: logs
per second sustained (logs answered 202 / time), then the check that nothing was lost or
duplicated (the collector's count == logs sent, all ids distinct). Then ``storage.insert``
alone, in this process, from 8 threads: the store's own rate, without HTTP.

**Dashboard.** On PostgreSQL, ``--rows`` logs spread over 30 days are written straight into
the tables (``generate_series``, not HTTP), then a collector answers, 20 times each: the
summary of everything stored, the summary of the last 24 hours, a filtered log page
(``status=errors`` on one endpoint) and the log page of one caller. p50 and p95 in ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from readme_metrics.collector.storage import open_storage, validate_batch  # noqa: E402
from tests.collector_rig import auth, collector, make_log  # noqa: E402
from tests.pg_rig import PostgresServer  # noqa: E402

HEADERS = [
    {"name": name, "value": value}
    for name, value in [
        ("Host", "api.example.test"),
        ("User-Agent", "python-requests/2.31.0"),
        ("Accept", "application/json"),
        ("Accept-Encoding", "gzip, deflate"),
        ("Content-Type", "application/json"),
        ("X-Request-Id", "6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b"),
        ("Authorization", "Bearer sha512-[REDACTED]"),
        ("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ]
]
REQUEST_BODY = json.dumps({"items": [{"sku": f"SKU-{i:05d}", "qty": i % 7 + 1} for i in range(10)]})
RESPONSE_BODY = json.dumps({"order": {"id": 12345, "status": "accepted", "lines": 10, "total": "129.90"}})


def typical_log(log_id: str, i: int) -> dict[str, Any]:
    return make_log(
        log_id=log_id,
        method="POST" if i % 3 == 0 else "GET",
        url=f"http://api.example.test/orders/{1000 + i % 500}?expand=lines",
        status=(500 if i % 50 == 0 else 404 if i % 20 == 0 else 200),
        duration_ms=float(5 + i % 200),
        group_id=f"sha512-key{i % 40:04d}?{i % 40:04d}",
        label=f"Customer {i % 40}",
        request_body=REQUEST_BODY,
        response_body=RESPONSE_BODY,
        request_headers=HEADERS,
    )


def batch_template(size: int) -> bytes:
    """A batch whose ids are ``@@BATCH@@-<n>``: one bytes.replace makes a fresh batch."""
    return json.dumps([typical_log(f"@@BATCH@@-{i}", i) for i in range(size)]).encode()


def poster(url: str, template: bytes, size: int, seconds: float, results: Any) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/json", "Authorization": auth("bench")}
    sent = refused = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = template.replace(b"@@BATCH@@", uuid.uuid4().hex.encode())
        conn.request("POST", "/v1/request", body, headers)
        response = conn.getresponse()
        response.read()
        if response.status == 202:
            sent += size
        else:
            refused += 1
    conn.close()
    results.put((sent, refused))


def ingest(db: str, posters: int, size: int, seconds: float) -> dict[str, Any]:
    srv = collector(db, "--max-concurrent-ingests", str(posters * 2), "--max-rows", "0", "--max-age-days", "0")
    try:
        template = batch_template(size)
        results: Any = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(target=poster, args=(srv.url, template, size, seconds, results))
            for _ in range(posters)
        ]
        started = time.monotonic()
        for p in procs:
            p.start()
        answers = [results.get(timeout=seconds + 120) for _ in procs]
        elapsed = time.monotonic() - started
        for p in procs:
            p.join()
        sent = sum(a[0] for a in answers)
        with urllib.request.urlopen(srv.url + "/healthz") as response:
            stored = json.loads(response.read())["logs"]
    finally:
        srv.stop()
    storage = open_storage(db, max_age_days=None, max_rows=None)
    try:
        with storage.engine.reader() as conn:
            distinct = conn.one("SELECT count(DISTINCT id) FROM logs")[0]
    finally:
        storage.close()
    return {
        "logs_per_s": round(sent / elapsed),
        "sent": sent,
        "stored": stored,
        "distinct_ids": distinct,
        "refused_batches": sum(a[1] for a in answers),
        "log_bytes": len(template) // size,
        "ok": sent == stored == distinct,
    }


def insert_rate(db: str, size: int, seconds: float, threads: int = 8) -> int:
    """``storage.insert`` alone (records validated beforehand), logs per second."""
    storage = open_storage(db, max_age_days=None, max_rows=None)
    template = batch_template(size)
    count = [0]
    lock = threading.Lock()

    def work() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            records = validate_batch(json.loads(template.replace(b"@@BATCH@@", uuid.uuid4().hex.encode())))
            storage.insert(records)
            with lock:
                count[0] += len(records)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    storage.close()
    return round(count[0] / (time.monotonic() - started))


FILL = """
INSERT INTO logs (id, received, started, method, url, path, endpoint, status, duration_ms,
                  group_id, group_label, client_ip, route, weight, direction, host)
SELECT 'fill-' || g, %(now)s, %(now)s - (g::float8 / %(rows)s) * 30 * 86400,
       CASE WHEN mod(g, 3) = 0 THEN 'POST' ELSE 'GET' END,
       'http://api.example.test/orders/' || mod(g, 500), '/orders/' || mod(g, 500),
       (CASE WHEN mod(g, 3) = 0 THEN 'POST' ELSE 'GET' END) || ' /orders/{id}'
           || (CASE WHEN mod(g, 7) = 0 THEN '/lines' ELSE '' END),
       CASE WHEN mod(g, 50) = 0 THEN 500 WHEN mod(g, 20) = 0 THEN 404 ELSE 200 END,
       5 + mod(g * 7919, 1000) / 4.0, 'sha512-key' || mod(g, 40), 'Customer ' || mod(g, 40), '10.0.0.1',
       NULL, 1, 'incoming', 'api.example.test'
FROM generate_series(1, %(rows)s) AS g
"""
FILL_BODIES = "INSERT INTO bodies (seq, log) SELECT seq, %(text)s FROM logs"


def dashboard(url: str, rows: int) -> dict[str, Any]:
    import psycopg

    storage = open_storage(url)  # the schema
    storage.close()
    t0 = time.monotonic()
    text = json.dumps(typical_log("fill", 1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL, {"now": time.time(), "rows": rows})
        conn.execute(FILL_BODIES, {"text": text})
        conn.execute("VACUUM ANALYZE logs")
        conn.execute("VACUUM ANALYZE bodies")
    fill_s = time.monotonic() - t0
    srv = collector(url, "--max-rows", "0", "--max-age-days", "0")
    try:
        since = time.time() - 86400
        queries = {
            "summary, all stored": "/api/summary",
            "summary, last 24 h": f"/api/summary?since={since}",
            "log page, errors of one endpoint": "/api/logs?status=errors&endpoint=GET%20/orders/%7Bid%7D&limit=100",
            "log page, one caller": "/api/logs?group=sha512-key7&limit=100",
        }
        figures: dict[str, Any] = {}
        for name, path in queries.items():
            times = []
            for _ in range(20):
                t = time.perf_counter()
                with urllib.request.urlopen(srv.url + path, timeout=120) as response:
                    response.read()
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            figures[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[18], 1)}
    finally:
        srv.stop()
    return {"rows": rows, "fill_s": round(fill_s, 1), "queries": figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--posters", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    engines = args.engines.split(",")
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    pg = PostgresServer(fast=False) if "postgres" in engines else None
    tmp = Path(tempfile.mkdtemp(prefix="readme-metrics-bench-"))
    try:
        for engine in engines:
            make = (lambda name: pg.new_database(name)) if engine == "postgres" and pg else None
            db = make("ingest") if make else str(tmp / f"ingest-{uuid.uuid4().hex[:6]}.sqlite3")
            result = ingest(db, args.posters, args.batch, args.seconds)
            direct_db = make("direct") if make else str(tmp / f"direct-{uuid.uuid4().hex[:6]}.sqlite3")
            result["storage_insert_logs_per_s"] = insert_rate(direct_db, args.batch, min(args.seconds, 5.0))
            report[engine] = result
            if not args.json:
                print(
                    f"{engine:9} ingest over HTTP: {result['logs_per_s']:>7,} logs/s "
                    f"({args.posters} posters, batches of {args.batch}, {result['log_bytes']} B a log); "
                    f"sent {result['sent']:,}, stored {result['stored']:,}, distinct ids {result['distinct_ids']:,}, "
                    f"refused batches {result['refused_batches']} -> {'OK' if result['ok'] else 'MISMATCH'}; "
                    f"storage.insert alone: {result['storage_insert_logs_per_s']:,} logs/s",
                    flush=True,
                )
        if pg and args.rows:
            report["dashboard"] = dashboard(pg.new_database("dashboard"), args.rows)
            if not args.json:
                d = report["dashboard"]
                print(f"dashboard on PostgreSQL, {d['rows']:,} logs (filled in {d['fill_s']} s):")
                for name, f in d["queries"].items():
                    print(f"  {name:34} p50 {f['p50_ms']:>7} ms   p95 {f['p95_ms']:>7} ms")
    finally:
        if pg:
            pg.stop()
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
