"""The collector's ingest rate and dashboard latency, on SQLite and PostgreSQL.

    .venv/bin/python bench/ingest.py [--seconds 8] [--posters 8] [--batch 100] [--workers 1,2]
                                     [--plain] [--rows 1000000] [--engines sqlite,postgres]
                                     [--no-insert] [--json]
    python3 dev.py bench-ingest       # the same, with the defaults

**Ingest.** For each engine and each ``--workers`` count, a ``readme-metrics serve --workers
N`` subprocess (a fresh SQLite file, or a fresh database on a PostgreSQL server started for
the run with its default, durable settings: ``fsync`` and ``synchronous_commit`` on)
receives batches of ``--batch`` typical logs (about 2 KB each: a dozen headers, JSON bodies
both ways) from ``--posters`` concurrent processes, each on one kept-alive
``http.client`` connection, for ``--seconds``. The posters are made cheap, since they share
the machine's cores with the collector: their bodies (fresh ids, gzip-compressed as the SDK
sends them, or not with ``--plain``) are encoded before the clock starts. Printed: logs per
second sustained (logs answered 202 / time); the check that nothing was lost or duplicated
(the collector's count == logs sent, all ids distinct); and the CPU each log cost, from
``/proc``: the collector's process tree (all its workers), PostgreSQL's (the postmaster
and its backends) and the posters', with the rate one core would sustain at that cost.
Then ``storage.insert`` alone, in this process, from 8 threads: the store's own rate,
without HTTP.

**Dashboard.** On PostgreSQL, ``--rows`` logs spread over 30 days are written straight into
the tables (``generate_series``, not HTTP), then a collector answers, 20 times each: the
summary of everything stored (the first computed from the rows, printed apart; the next
ones kept, see store/cache.py), the summary of the last 24 hours, a filtered log page
(``status=errors`` on one endpoint) and the log page of one caller. p50 and p95 in ms.
"""

from __future__ import annotations

import argparse
import gzip
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

from readme_metrics.collector.ingest import parse_json  # noqa: E402
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


def prepared_bodies(template: bytes, count: int, gzipped: bool) -> list[bytes]:
    """``count`` batches with fresh ids, encoded beforehand (gzip like the SDK, or not)."""
    bodies = [template.replace(b"@@BATCH@@", uuid.uuid4().hex.encode()) for _ in range(count)]
    return [gzip.compress(b, 6) for b in bodies] if gzipped else bodies


def poster(
    url: str, template: bytes, size: int, seconds: float, gzipped: bool, ready: Any, go: Any, results: Any
) -> None:
    """One SDK-like sender on one kept-alive connection, as cheap as it can be: its bodies are
    encoded before the clock starts (more are made on the fly if it runs out)."""
    host, port = url.removeprefix("http://").split(":")
    bodies = prepared_bodies(template, PREPARED, gzipped)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/json", "Authorization": auth("bench")}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    sent = refused = 0
    ready.put(None)
    go.wait()
    cpu = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = bodies.pop() if bodies else prepared_bodies(template, 1, gzipped)[0]
        conn.request("POST", "/v1/request", body, headers)
        response = conn.getresponse()
        response.read()
        if response.status == 202:
            sent += size
        else:
            refused += 1
    conn.close()
    results.put((sent, refused, time.process_time() - cpu))


#: Batches each poster encodes before the clock starts (enough for 40,000 logs/s with the defaults).
PREPARED = 400


def _stat(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:  # gone
        return None


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU so far of process ``root`` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) is not None:
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return sum(t for pid, t in times.items() if _descends(pid, root, parents))


def _descends(pid: int, root: int, parents: dict[int, int]) -> bool:
    while pid != root and pid in parents and pid > 1:
        pid = parents[pid]
    return pid == root


def ingest(
    db: str,
    posters: int,
    size: int,
    seconds: float,
    *,
    workers: int = 1,
    gzipped: bool = True,
    pg_pid: int | None = None,
) -> dict[str, Any]:
    args = ("--max-concurrent-ingests", str(posters * 2), "--max-rows", "0", "--max-age-days", "0")
    srv = collector(db, *args, "--workers", str(workers))
    try:
        template = batch_template(size)
        results: Any = multiprocessing.Queue()
        ready: Any = multiprocessing.Queue()
        go: Any = multiprocessing.Event()
        procs = [
            multiprocessing.Process(target=poster, args=(srv.url, template, size, seconds, gzipped, ready, go, results))
            for _ in range(posters)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=300)
        time.sleep(1.0 if workers > 1 else 0.2)  # the workers are up (the port answers once one is)
        cpu = tree_cpu_seconds(srv.proc.pid)
        db_cpu = tree_cpu_seconds(pg_pid) if pg_pid else 0.0
        started = time.monotonic()
        go.set()
        answers = [results.get(timeout=seconds + 120) for _ in procs]
        elapsed = time.monotonic() - started
        cpu = tree_cpu_seconds(srv.proc.pid) - cpu
        db_cpu = (tree_cpu_seconds(pg_pid) - db_cpu) if pg_pid else 0.0
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
    per_log = max(sent, 1)
    return {
        "workers": workers,
        "gzip": gzipped,
        "logs_per_s": round(sent / elapsed),
        "sent": sent,
        "stored": stored,
        "distinct_ids": distinct,
        "refused_batches": sum(a[1] for a in answers),
        "log_bytes": len(template) // size,
        "collector_cpu_us_per_log": round(cpu / per_log * 1e6, 1),
        "database_cpu_us_per_log": round(db_cpu / per_log * 1e6, 1) if pg_pid else None,
        "posters_cpu_us_per_log": round(sum(a[2] for a in answers) / per_log * 1e6, 1),
        "ok": sent == stored == distinct,
    }


def insert_rate(db: str, size: int, batches: int = 300, threads: int = 8) -> dict[str, Any]:
    """``storage.insert`` alone, from ``threads`` threads (records validated beforehand)."""
    storage = open_storage(db, max_age_days=None, max_rows=None)
    template = batch_template(size)
    t0 = time.process_time()
    work = [
        validate_batch(parse_json(template.replace(b"@@BATCH@@", uuid.uuid4().hex.encode()))) for _ in range(batches)
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
            first = times[0]
            times.sort()
            figures[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[18], 1)}
            if name == "summary, all stored":
                figures[name]["first_ms"] = round(first, 1)
    finally:
        srv.stop()
    return {"rows": rows, "fill_s": round(fill_s, 1), "queries": figures}


def postmaster_pid(pg: PostgresServer) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])


def print_ingest(engine: str, r: dict[str, Any], posters: int, batch: int) -> None:
    db = f", PostgreSQL {r['database_cpu_us_per_log']} us" if r["database_cpu_us_per_log"] is not None else ""
    cpu = r["collector_cpu_us_per_log"] + (r["database_cpu_us_per_log"] or 0)
    print(
        f"{engine}, {r['workers']} worker(s): {r['logs_per_s']:,} logs/s over HTTP ({posters} posters,"
        f" batches of {batch}, {r['log_bytes']} B a log, {'gzip' if r['gzip'] else 'not compressed'});"
        f" sent {r['sent']:,}, stored {r['stored']:,}, distinct ids {r['distinct_ids']:,},"
        f" refused batches {r['refused_batches']} -> {'OK' if r['ok'] else 'MISMATCH'}\n"
        f"  CPU a log: collector {r['collector_cpu_us_per_log']} us{db}, posters {r['posters_cpu_us_per_log']} us"
        f" -> one core serving alone: {round(1e6 / max(cpu, 0.1)):,} logs/s",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--posters", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--workers", default="1,2", help="comma-separated: the collector's --workers, one run each")
    parser.add_argument("--plain", action="store_true", help="bodies not compressed (the SDK gzips them)")
    parser.add_argument("--no-insert", action="store_true", help="skip storage.insert alone")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    pg = PostgresServer(fast=False) if "postgres" in engines or args.rows else None
    tmp = Path(tempfile.mkdtemp(prefix="readme-metrics-bench-"))
    try:
        for engine in engines:
            make = (lambda name: pg.new_database(name)) if engine == "postgres" and pg else None
            pg_pid = postmaster_pid(pg) if make and pg else None
            report[engine] = runs = []
            for workers in (int(w) for w in args.workers.split(",")):
                db = make("ingest") if make else str(tmp / f"ingest-{uuid.uuid4().hex[:6]}.sqlite3")
                result = ingest(
                    db, args.posters, args.batch, args.seconds, workers=workers, gzipped=not args.plain, pg_pid=pg_pid
                )
                runs.append(result)
                if not args.json:
                    print_ingest(engine, result, args.posters, args.batch)
            if not args.no_insert:
                direct_db = make("direct") if make else str(tmp / f"direct-{uuid.uuid4().hex[:6]}.sqlite3")
                report[f"{engine}_storage_insert"] = direct = insert_rate(direct_db, args.batch)
                if not args.json:
                    print(
                        f"  {engine} storage.insert alone (8 threads, one process): {direct['logs_per_s']:,} logs/s,"
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
                    first = f" (first, computed: {f['first_ms']} ms)" if "first_ms" in f else ""
                    print(f"  {name:34} p50 {f['p50_ms']:>7} ms   p95 {f['p95_ms']:>7} ms{first}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if pg:
            pg.stop()
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
