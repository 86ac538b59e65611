"""Several destinations: JSON lines files (rotation, several processes), and the outboxes
that keep one exporter's failure or slowness from holding back another.

Everything runs for real: files on disk, subprocesses writing one file at once, a real
HTTP server for the app, real refused and hanging sockets for exporters that are down.
"""

from __future__ import annotations

import concurrent.futures
import io
import itertools
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.test import Client as WerkzeugClient

from readme_metrics import MetricsApiConfig
from readme_metrics.collector.storage import Storage, validate_batch
from readme_metrics.config import parse_exporters
from readme_metrics.delivery import client_for
from readme_metrics.delivery.fanout import exporters_of
from readme_metrics.exporters import JsonLinesExporter, MemoryExporter, OtlpExporter, ReadMeExporter
from readme_metrics.retry import Retry
from tests.apps import delivery_app
from tests.servers import free_port, gunicorn
from tests.standin import MetricsStandIn, entry, header_value, wait_until

ROOT = Path(__file__).resolve().parent.parent


def lines_of(*paths: Path) -> list[bytes]:
    return [line for path in paths if path.exists() for line in path.read_bytes().splitlines()]


# -- JSON lines: the file ------------------------------------------------------------------


def test_each_log_is_one_line_holding_the_very_bytes_of_the_wire_log(tmp_path: Path) -> None:
    path = tmp_path / "api.jsonl"
    memory = MemoryExporter()
    middleware = delivery_app.make(metrics_server="http://127.0.0.1:9", exporters=[JsonLinesExporter(path), memory])
    try:
        for n in range(3):
            with WerkzeugClient(middleware).get(f"/hello?n={n}", headers={"X-Api-Key": "user-key-4321"}):
                pass
        assert middleware.client.flush(5)
        lines = lines_of(path)
        assert path.read_bytes().endswith(b"\n") and len(lines) == 3
        logs = [json.loads(line) for line in lines]
        # The same logs as the other exporter got, in the same order: built once, sent to both.
        assert logs == memory.logs
        assert [log["request"]["log"]["entries"][0]["request"]["url"] for log in logs] == [
            f"http://localhost/hello?n={n}" for n in range(3)
        ]
        # The collector accepts them as they are (the wire protocol's log objects).
        assert len(validate_batch(logs)) == 3
        stats = middleware.stats()
        assert stats["exporters"]["jsonl"]["sent"] == 3 == stats["exporters"]["memory"]["sent"]
        assert stats["exporters"]["jsonl"]["bytes_sent"] == path.stat().st_size
    finally:
        middleware.client.close(1)


def test_streams_binary_and_text() -> None:
    binary, text = io.BytesIO(), io.StringIO()
    for stream in (binary, text):
        exporter = JsonLinesExporter(stream)
        assert exporter.export([b'{"a":1}', '{"b":"é"}'.encode()], 1.0) == len('{"a":1}\n{"b":"é"}\n'.encode())
        exporter.shutdown()  # a stream is the caller's: left open
    assert binary.getvalue() == '{"a":1}\n{"b":"é"}\n'.encode()
    assert text.getvalue() == '{"a":1}\n{"b":"é"}\n'


def test_rotation_keeps_every_line_once_and_files_within_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "api.jsonl"
    exporter = JsonLinesExporter(path, max_bytes=1000, backups=100)
    written = []
    for batch in range(60):
        logs = [json.dumps({"id": f"{batch}-{i}", "pad": "x" * (batch % 7) * 10}).encode() for i in range(3)]
        exporter.export(logs, 1.0)
        written += logs
    exporter.shutdown()
    files = [path] + [tmp_path / f"api.jsonl.{n}" for n in range(1, 101)]
    present = [f for f in files if f.exists()]
    assert len(present) > 5  # it did rotate
    assert all(f.stat().st_size <= 1000 for f in present)
    # Oldest first: api.jsonl.N ... api.jsonl.1, api.jsonl.
    assert lines_of(*reversed(present)) == written


def test_rotation_deletes_beyond_backups(tmp_path: Path) -> None:
    path = tmp_path / "api.jsonl"
    exporter = JsonLinesExporter(path, max_bytes=100, backups=2)
    for n in range(20):
        exporter.export([json.dumps({"n": n, "pad": "y" * 60}).encode()], 1.0)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [
        "api.jsonl",
        "api.jsonl.1",
        "api.jsonl.2",
    ]
    rotated = [path.with_suffix(".jsonl.2"), path.with_suffix(".jsonl.1"), path]
    assert [json.loads(line)["n"] for line in lines_of(*rotated)] == [17, 18, 19]


WRITER = textwrap.dedent(
    """
    import json, os, random, sys, time
    from readme_metrics.exporters import JsonLinesExporter
    path, max_bytes, name, batches = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    exporter = JsonLinesExporter(path, max_bytes=max_bytes, backups=10_000)
    start = float(sys.argv[5])
    while time.time() < start:  # both processes start writing together
        time.sleep(0.001)
    for b in range(batches):
        logs = [json.dumps({"id": f"{name}-{b}-{i}", "pid": os.getpid(), "pad": "z" * random.randrange(2000)}).encode()
                for i in range(random.randrange(1, 20))]
        exporter.export(logs, 5.0)
        print(len(logs), flush=True)
    """
)


def run_writers(path: str, max_bytes: int, processes: int = 2, batches: int = 150) -> dict[str, int]:
    start = time.time() + 1.0
    procs = {
        f"p{n}": subprocess.Popen(
            [sys.executable, "-c", WRITER, path, str(max_bytes), f"p{n}", str(batches), str(start)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        for n in range(processes)
    }
    counts = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        counts[name] = sum(int(line) for line in out.split())
    return counts


def check_ids(lines: list[bytes], counts: dict[str, int]) -> None:
    ids = [json.loads(line)["id"] for line in lines]  # every line whole: each parses
    assert len(ids) == len(set(ids)) == sum(counts.values())  # nothing lost, nothing twice
    for name, count in counts.items():
        assert sum(1 for i in ids if i.startswith(name + "-")) == count


@pytest.mark.parametrize("max_bytes", [0, 50_000], ids=["one-file", "rotated"])
def test_two_processes_write_one_file_every_line_whole_none_lost(tmp_path: Path, max_bytes: int) -> None:
    path = tmp_path / "api.jsonl"
    counts = run_writers(str(path), max_bytes)
    files = [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]
    if max_bytes:
        assert len(files) > 10  # rotated many times while both wrote
    else:
        assert files == [path]
    check_ids(lines_of(*files), counts)
    # Both processes' lines interleave in the files (they did write at the same time).
    pids = [json.loads(line)["pid"] for line in lines_of(*files)]
    assert sum(1 for a, b in itertools.pairwise(pids) if a != b) > 2


def test_one_file_per_process_with_pid_placeholder(tmp_path: Path) -> None:
    counts = run_writers(str(tmp_path / "api-{pid}.jsonl"), 0, batches=20)
    files = sorted(tmp_path.glob("api-*.jsonl"))
    assert len(files) == 2
    for file in files:  # each file holds one process's lines, named by its pid
        assert {json.loads(line)["pid"] for line in lines_of(file)} == {int(file.stem.split("-")[1])}
    check_ids(lines_of(*files), counts)


def test_an_unwritable_path_is_an_export_error_retried_then_counted(tmp_path: Path) -> None:
    config = MetricsApiConfig(
        "k",
        delivery_app.group,
        exporters=[JsonLinesExporter(tmp_path / "missing-dir" / "api.jsonl"), MemoryExporter()],
        retry=Retry(attempts=2, backoff_factor=0.01),
        flush_interval=0.01,
    )
    client = client_for(config)
    try:
        with WerkzeugClient(delivery_app.ControlledMiddleware(delivery_app.app, config)).get("/hello"):
            pass
        wait_until(lambda: client.stats()["exporters"]["jsonl"]["dropped"] == {"retries_exhausted": 1})
        stats = client.stats()
        assert "No such file or directory" in stats["exporters"]["jsonl"]["last_error"]
        assert stats["exporters"]["memory"]["sent"] == 1 and stats["exporters"]["jsonl"]["retried"] == 1
        # Top level: the first exporter's counters.
        assert stats["dropped"] == {"retries_exhausted": 1} and stats["sent"] == 0 and stats["queued"] == 1
    finally:
        client.close(1)


# -- independence: one exporter down, the others deliver ------------------------------------


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("down", ["refused", "hanging"])
def test_one_exporter_down_the_other_keeps_delivering_and_bounds_hold(
    down: str, hanging_port: int, tmp_path: Path
) -> None:
    port = free_port() if down == "refused" else hanging_port
    path = tmp_path / "api.jsonl"
    middleware = delivery_app.make(
        metrics_server=f"http://127.0.0.1:{port}",
        exporters=[ReadMeExporter("k", f"http://127.0.0.1:{port}"), JsonLinesExporter(path)],
        timeout=1.0,
        retry=Retry(attempts=100, backoff_factor=0.2, backoff_max=0.5, max_age=60),
        max_queue_events=20,
        flush_interval=0.01,
    )
    client = middleware.client
    try:
        started = time.monotonic()
        for n in range(60):
            with WerkzeugClient(middleware).get(f"/hello?n={n}"):
                pass
            if n % 10 == 9:  # the file keeps up while the API is down
                wait_until(lambda n=n: len(lines_of(path)) == n + 1, timeout=5)
        assert time.monotonic() - started < 10
        stats = client.stats()
        readme, jsonl = stats["exporters"]["readme"], stats["exporters"]["jsonl"]
        assert jsonl["sent"] == 60 and jsonl["dropped"] == {}
        assert readme["sent"] == 0
        # The down exporter's outbox stayed within its bound (20 waiting, plus the batch it
        # holds): what it refused is counted as dropped for it alone.
        assert readme["queued"] + readme["dropped"]["outbox_full"] == 60
        assert readme["dropped"]["outbox_full"] >= 30 and readme["waiting"] <= 30
        assert readme["last_error"] is not None
        assert stats["queued"] == 60  # the capture queue took every one
    finally:
        client.close(1.5)
    # What the down exporter still held is counted as dropped: every log accounted for.
    wait_until(lambda: sum(client.stats()["exporters"]["readme"]["dropped"].values()) == 60, timeout=3)


def test_close_delivers_to_the_healthy_exporter_within_the_deadline(hanging_port: int, tmp_path: Path) -> None:
    path = tmp_path / "api.jsonl"
    middleware = delivery_app.make(
        metrics_server="http://127.0.0.1:9",
        exporters=[ReadMeExporter("k", f"http://127.0.0.1:{hanging_port}"), JsonLinesExporter(path)],
        timeout=30.0,
        flush_interval=10.0,  # nothing leaves before the close
        buffer_length=100,
    )
    for n in range(10):
        with WerkzeugClient(middleware).get(f"/hello?n={n}"):
            pass
    started = time.monotonic()
    middleware.client.close(1.0)
    assert time.monotonic() - started < 1.5
    assert len(lines_of(path)) == 10
    stats = middleware.client.stats()
    assert stats["exporters"]["jsonl"]["sent"] == 10 and stats["exporters"]["readme"]["sent"] == 0
    wait_until(lambda: middleware.client.stats()["exporters"]["readme"]["dropped"] == {"shutdown": 10}, timeout=3)


# -- configuration ------------------------------------------------------------------------


def test_exporters_argument_is_validated() -> None:
    for bad in ([], [object()], "readme", [MemoryExporter()] * 2):
        with pytest.raises(ValueError, match="exporter"):
            MetricsApiConfig("k", None, exporters=bad)  # type: ignore[arg-type]


def test_environment_names_the_exporters(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert parse_exporters(" readme , jsonl:/var/log/api-{pid}.jsonl,otlp:http://127.0.0.1:4318,") == (
        ("readme", ""),
        ("jsonl", "/var/log/api-{pid}.jsonl"),
        ("otlp", "http://127.0.0.1:4318"),
    )
    for bad, message in (("kafka:x", "unknown exporter 'kafka'"), ("jsonl", "needs a path"), ("otlp:ftp://x", "URL")):
        with pytest.raises(ValueError, match=message):
            parse_exporters(bad)
    monkeypatch.setenv("README_METRICS_EXPORTERS", f"readme,jsonl:{tmp_path}/a.jsonl,jsonl:-,otlp:http://127.0.0.1:1")
    config = MetricsApiConfig("k", None, exporters=[MemoryExporter()])  # the environment wins
    exporters = exporters_of(config)
    assert [type(e) for e in exporters] == [ReadMeExporter, JsonLinesExporter, JsonLinesExporter, OtlpExporter]
    assert exporters[0].url == "https://metrics.readme.io/v1/request"  # type: ignore[attr-defined]
    assert exporters[1].path == f"{tmp_path}/a.jsonl" and exporters[2].stream is sys.stdout  # type: ignore[attr-defined]
    assert exporters[3].url == "http://127.0.0.1:1/v1/logs"  # type: ignore[attr-defined]
    assert list(client_for(config).stats()["exporters"]) == ["readme", "jsonl", "jsonl-2", "otlp"]
    monkeypatch.setenv("README_METRICS_EXPORTERS", "nope")
    with pytest.raises(ValueError, match="README_METRICS_EXPORTERS"):
        MetricsApiConfig("k", None)


def test_one_exporter_keeps_the_direct_path() -> None:
    memory = MemoryExporter()
    config = MetricsApiConfig("k", delivery_app.group, exporters=[memory], flush_interval=0.01)
    before = set(threading.enumerate())  # (other tests' clients may have left workers running)
    client = client_for(config)
    try:
        assert client.fanout is None and client.exporter is memory
        with WerkzeugClient(delivery_app.ControlledMiddleware(delivery_app.app, config)).get("/hello"):
            pass
        assert client.flush(5) and len(memory.logs) == 1
        assert client.queue.worker is not None and client.queue.worker.is_alive()
        started = [t.name for t in set(threading.enumerate()) - before]
        assert "readme-metrics-worker" in started and "readme-metrics-memory" not in started  # no outbox thread
    finally:
        client.close(1)


# -- the collector imports the files ----------------------------------------------------------


def test_the_collector_imports_a_jsonl_file_once(tmp_path: Path) -> None:
    path = tmp_path / "api.jsonl"
    memory = MemoryExporter()
    middleware = delivery_app.make(metrics_server="http://127.0.0.1:9", exporters=[JsonLinesExporter(path), memory])
    try:
        for n in range(4):
            with WerkzeugClient(middleware).get(f"/hello?n={n}"):
                pass
        assert middleware.client.flush(5)
    finally:
        middleware.client.close(1)
    with path.open("ab") as file:
        file.write(b"not json\n\n")
    db = tmp_path / "c.sqlite3"
    command = [sys.executable, "-m", "readme_metrics", "import", "--db", str(db), str(path)]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert first.returncode == 1  # a line was skipped, and said so
    assert f"{path}:5: skipped" in first.stderr and "imported 4 logs" in first.stdout
    again = subprocess.run([*command[:-1], "-"], input=path.read_text(), capture_output=True, text=True, cwd=ROOT)
    assert "imported 0 logs" in again.stdout and "(4 already there, 1 lines skipped)" in again.stdout
    storage = Storage(db)
    try:
        assert storage.count() == 4
        for log in memory.logs:  # stored as sent
            assert storage.get(log["_id"]) == log
    finally:
        storage.close()


# -- under gunicorn: forked workers, exporters named by the environment -----------------------


def test_gunicorn_preload_workers_write_one_shared_file_and_their_own(tmp_path: Path) -> None:
    with MetricsStandIn() as api:
        env = {
            "README_METRICS_SERVER": api.url,
            "README_METRICS_EXPORTERS": f"readme,jsonl:{tmp_path}/all.jsonl,jsonl:{tmp_path}/api-{{pid}}.jsonl",
            "RM_BUFFER_LENGTH": "5",
        }
        server = gunicorn("tests.apps.delivery_app:wrapped", env, "--preload", "-w", "3")
        wanted = [f"gun-{n}" for n in range(45)]
        try:

            def one(test_id: str) -> str:
                response = requests.get(server.url + "/pid?0.05", headers={"X-Test-Id": test_id}, timeout=10)
                assert response.status_code == 200
                return response.text

            with concurrent.futures.ThreadPoolExecutor(9) as pool:
                served_by = set(pool.map(one, wanted))
            assert len(served_by) > 1, "requests did not spread over the workers"
        finally:
            server.stop()
        api.wait_for(lambda log: True, count=len(wanted))

        def tid(log: dict[str, Any]) -> str:
            return header_value(entry(log)["request"]["headers"], "X-Test-Id") or ""

        shared = [json.loads(line) for line in lines_of(tmp_path / "all.jsonl")]
        assert sorted(map(tid, shared)) == sorted(wanted)  # every worker's, once each
        assert sorted(map(tid, api.logs)) == sorted(wanted)
        own = sorted(tmp_path.glob("api-*.jsonl"))
        assert {file.stem.split("-")[1] for file in own} == served_by  # one file per worker
        for file in own:
            logs = [json.loads(line) for line in lines_of(file)]
            assert {entry(log)["response"]["content"]["text"] for log in logs} == {file.stem.split("-")[1]}
        assert sorted(tid(json.loads(line)) for line in lines_of(*own)) == sorted(wanted)


def test_synchronous_mode_sends_to_every_exporter_in_the_request(tmp_path: Path) -> None:
    path, memory = tmp_path / "api.jsonl", MemoryExporter()
    config = MetricsApiConfig(
        "k", delivery_app.group, background_worker_mode=False, exporters=[JsonLinesExporter(path), memory]
    )
    client = client_for(config)
    with WerkzeugClient(delivery_app.ControlledMiddleware(delivery_app.app, config)).get("/hello"):
        pass
    # Sent by the request's own thread, before it returned: no worker, nothing to flush.
    assert len(lines_of(path)) == 1 and len(memory.logs) == 1
    memory.fail_with = 503
    with WerkzeugClient(delivery_app.ControlledMiddleware(delivery_app.app, config)).get("/hello"):
        pass
    stats = client.stats()
    assert stats["exporters"]["memory"]["dropped"] == {"delivery_error": 1}  # one try, no retry
    assert stats["exporters"]["jsonl"]["sent"] == 2 and len(lines_of(path)) == 2
    client.close(1)
    assert client.fanout is not None
    assert client.fanout.outboxes[0].sender.exporter._fd is None  # type: ignore[attr-defined]  # closed
