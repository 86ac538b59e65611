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
import shutil
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(db: str, posters: int, size: int, seconds: float, collectors: int = 1) -> dict[str, Any]:
    args = ("--max-concurrent-ingests", str(posters * 2), "--max-rows", "0", "--max-age-days", "0")
    servers = [collector(db, *args) for _ in range(collectors)]
    try:
        template = batch_template(size)
        results: Any = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(target=poster, args=(servers[i % collectors].url, template, size, seconds, results))
            for i in range(posters)
        ]
        cpu = [cpu_seconds(srv.proc.pid) for srv in servers]
        started = time.monotonic()
        for p in procs:
            p.start()
        answers = [results.get(timeout=seconds + 120) for _ in procs]
        elapsed = time.monotonic() - started
        cpu = [cpu_seconds(srv.proc.pid) - before for srv, before in zip(servers, cpu, strict=True)]
        for p in procs:
            p.join()
        sent = sum(a[0] for a in answers)
        with urllib.request.urlopen(servers[0].url + "/healthz") as response:
            stored = json.loads(response.read())["logs"]
    finally:
        for srv in servers:
            srv.stop()
    storage = open_storage(db, max_age_days=None, max_rows=None)
    try:
        with storage.engine.reader() as conn:
            distinct = conn.one("SELECT count(DISTINCT id) FROM logs")[0]
    finally:
        storage.close()
    return {
        "collectors": collectors,
        "logs_per_s": round(sent / elapsed),
        "sent": sent,
        "stored": stored,
        "distinct_ids": distinct,
        "refused_batches": sum(a[1] for a in answers),
        "log_bytes": len(template) // size,
        "collector_cpu_us_per_log": round(sum(cpu) / max(sent, 1) * 1e6, 1),
        "ok": sent == stored == distinct,
    }


def insert_rate(db: str, size: int, batches: int = 300, threads: int = 8) -> dict[str, Any]:
    """``storage.insert`` alone, from ``threads`` threads (records validated beforehand)."""
    storage = open_storage(db, max_age_days=None, max_rows=None)
    template = batch_template(size)
    t0 = time.process_time()
    work = [
        validate_batch(json.loads(template.replace(b"@@BATCH@@", uuid.uuid4().hex.encode()))) for _ in range(batches)
    ]
    validate_us = (time.process_time() - t0) / (batches * size) * 1e6
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                if not work:
                    return
                records = work.pop()
            storage.insert(records)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    started, cpu = time.monotonic(), time.process_time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    storage.close()
    return {
        "logs_per_s": round(batches * size / elapsed),
        "client_cpu_us_per_log": round(cpu / (batches * size) * 1e6, 1),
        "parse_and_validate_cpu_us_per_log": round(validate_us, 1),
    }


FILL = """
INSERT INTO logs (id, received, started, method, url, path, endpoint, status, duration_ms,
                  group_id, group_label, client_ip, route, weight, direction, host)
SELECT 'fill-' || g, %(now)s, %(now)s - (g::float8 / %(rows)s) * 30 * 86400,
       CASE WHEN mod(g, 3) = 0 THEN 'POST' ELSE 'GET' END,
       'http://api.example.test/orders/' || mod(g, 500), '/orders/' || mod(g, 500),
       (CASE WHEN mod(g, 3) = 0 THEN 'POST' ELSE 'GET' END) || ' /orders/{id}'
           || (CASE WHEN mod(g, 7) = 0 THEN '/lines' ELSE '' END),
       CASE WHEN mod(g, 50) = 0 THEN 500 WHEN mod(g, 20) = 0 THEN 404 ELSE 200 END,
       5 + mod(g::bigint * 7919, 1000) / 4.0, 'sha512-key' || mod(g, 40), 'Customer ' || mod(g, 40), '10.0.0.1',
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
    parser.add_argument("--collectors", type=int, default=1, help="collector processes sharing the database")
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
            result = ingest(db, args.posters, args.batch, args.seconds, args.collectors)
            direct_db = make("direct") if make else str(tmp / f"direct-{uuid.uuid4().hex[:6]}.sqlite3")
            result["storage_insert"] = direct = insert_rate(direct_db, args.batch)
            report[engine] = result
            if not args.json:
                print(
                    f"{engine}: ingest over HTTP {result['logs_per_s']:,} logs/s ({args.posters} posters,"
                    f" {args.collectors} collector process(es), batches of {args.batch}, {result['log_bytes']} B"
                    f" a log); sent {result['sent']:,}, stored {result['stored']:,}, distinct ids"
                    f" {result['distinct_ids']:,}, refused batches {result['refused_batches']}"
                    f" -> {'OK' if result['ok'] else 'MISMATCH'}; collector CPU {result['collector_cpu_us_per_log']} us"
                    f" a log\n  storage.insert alone (8 threads, one process): {direct['logs_per_s']:,} logs/s,"
                    f" {direct['client_cpu_us_per_log']} us CPU a log in the process (parsing and validating"
                    f" beforehand: {direct['parse_and_validate_cpu_us_per_log']} us a log)",
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
        shutil.rmtree(tmp, ignore_errors=True)
        if pg:
            pg.stop()
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
