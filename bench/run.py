"""The benchmark: what the SDK costs the app it wraps. One command runs everything.

    python3 dev.py bench                   # full run (about 10 minutes)
    python3 dev.py bench --quick           # a shorter, noisier run (about 3 minutes)
    .venv/bin/python bench/run.py --help   # every option

What it measures (docs/benchmarks.md has the results and the method):

Throughput and latency
    The same small app, bare and wrapped, served on 127.0.0.1 (Flask under gunicorn,
    ``-k gthread --threads 8 -w 1``; FastAPI under uvicorn, one worker) and driven by
    ``wrk`` (``GET /ping``, a tiny JSON answer; ``POST /echo``, a 1 KiB JSON body echoed
    back, ``bench/echo.lua``). Bare and wrapped runs are interleaved, several rounds, the
    order rotated each round; each wrapped run is divided by the bare run of its round, and
    the median of those ratios is printed with the p99 latency of each (``wrk --latency``),
    so that machine noise cancels. Every SDK delivers to a real local metrics endpoint
    (``bench/sink.py``, its own process), and the sink's count of events is checked against
    the requests served.
Peers, side by side
    The existing ``readme-metrics`` 3.4.0 and Moesif's ``moesifwsgi`` / ``moesifasgi``, each
    in its own virtual environment under ``bench/.venvs/`` (created here on first use, with
    the same framework and server versions as ``.venv``). A peer that cannot be installed is
    reported and skipped.
Time to first byte
    Of a streamed response (5 chunks, 200 ms apart), bare and wrapped: the time from
    sending the request to receiving the first body byte, raw socket, median of 5 tries.
Peak RSS
    Of the server process while a 100 MB response streams through the middleware, over
    its idle RSS, compared with ``2 × max_body_bytes``.
Delivery rate
    Events per second one process builds, encodes and posts to the local endpoint
    (``bench/delivery_rate.py``).

``--sdk-path DIR`` runs "ours" from another copy of the package (``DIR/readme_metrics``),
to measure a change before making it. ``--profile`` records py-spy profiles of the
wrapped servers under load instead (tools in ``bench/.venvs/tools``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = BENCH / "apps"
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
OURS_PY = Path(sys.executable)

sys.path.insert(0, str(BENCH))
from sink import stats as sink_stats  # noqa: E402

FRAMEWORKS = ("flask", "fastapi")
ENDPOINTS = ("ping", "echo", "call")
#: The case of outgoing capture: ``GET /call`` makes one outgoing httpx call per request; it
#: runs bare, ``ours`` (incoming logs only) and ``ours@outgoing`` (``capture_outgoing=True``),
#: the last one in that case only.
OUTGOING_CASE = "call"
OUTGOING_VARIANTS = ("bare", "ours", "ours@outgoing")
#: Cases run only when named (``--endpoints audit,quiet``): ``audit`` posts a 1 MB JSON body
#: to a route whose policy keeps whole bodies (``bench/audit.lua``); ``quiet`` is ``/ping`` on
#: a route with ``log=False``.
MORE_ENDPOINTS = ("audit", "quiet")
CASE_NAMES = {
    "ping": "GET /ping",
    "echo": "POST /echo",
    "call": "GET /call (1 outgoing httpx call)",
    "audit": "POST /audit (1 MB)",
    "quiet": "GET /quiet",
}
#: Audit markers (``AUDIT-END``) a whole audit log carries: the request's and the response's.
AUDIT_ENDS_PER_LOG = 2
VARIANTS = ("bare", "ours", "readme340", "moesif")
PEERS: dict[str, dict[str, Any]] = {
    "readme340": {
        "label": "readme-metrics 3.4.0",
        "packages": ["readme-metrics==3.4.0"],
        "check": "import readme_metrics.flask_readme, readme_metrics.fastapi",
        "dists": ["readme-metrics"],
    },
    "moesif": {
        "label": "moesifwsgi / moesifasgi",
        "packages": ["moesifwsgi", "moesifasgi"],
        "check": "import moesifwsgi, moesifasgi",
        "dists": ["moesifwsgi", "moesifasgi"],
    },
}
#: Installed in each peer's environment at the versions .venv has, so only the SDK differs.
SHARED_DISTS = ("flask", "werkzeug", "fastapi", "starlette", "gunicorn", "uvicorn", "requests", "pydantic")
TARGETS = {"cpu_ratio": 0.87, "ratio": 0.90, "added_p99_ms": 1.0, "ttfb_ms": 10.0, "delivery_eps": 30_000}
SDK_LABELS = {"bare": "bare", "ours": "readme_metrics (this repo)", **{k: v["label"] for k, v in PEERS.items()}}
DEFAULT_MAX_BODY = 1024 * 1024
#: The audit case's target of added p99 (ms): a 1 MB body each way is logged whole.
AUDIT_ADDED_P99_MS = 2.0


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- environments ---------------------------------------------------------------------------


#: --compare NAME=DIR: more copies of the package run as variants "ours@NAME".
COMPARE: dict[str, str] = {}
#: --config NAME=JSON: this repository's SDK with more MetricsApiConfig options, run as
#: variants "ours@NAME" (the apps read them from BENCH_CONFIG).
CONFIGS: dict[str, str] = {}


def is_ours(variant: str) -> bool:
    return variant == "ours" or variant.startswith("ours@")


def label(variant: str) -> str:
    if variant.startswith("ours@"):
        return f"readme_metrics @{variant[5:]}"
    return str(SDK_LABELS[variant])


def sink_key(variant: str) -> str:
    """The API key (or app id) a variant delivers with: the sink counts per key."""
    return "bench-" + variant.replace("@", "-")


def venv_python(variant: str) -> Path:
    return OURS_PY if variant == "bare" or is_ours(variant) else VENVS / variant / "bin" / "python"


def dist_versions(python: Path, names: tuple[str, ...] | list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    VENVS.mkdir(parents=True, exist_ok=True)  # a directory without this repository's package in it
    result = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, check=False, cwd=VENVS)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def ensure_venv(name: str, packages: list[str], check: str) -> tuple[bool, str]:
    """Create bench/.venvs/NAME with PACKAGES (once); (usable, why not)."""
    where = VENVS / name
    python = where / "bin" / "python"
    stamp = where / ".bench-installed"
    wanted = "\n".join(packages)
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        say(f"  setting up {where.relative_to(ROOT)}: pip install {' '.join(packages)}")
        try:
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
                ensurepip = [str(python), "-m", "ensurepip", "--upgrade"]
                subprocess.run(ensurepip, check=True, capture_output=True, text=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
            return False, f"{exc.cmd[2]} failed: " + " | ".join(tail)
        stamp.write_text(wanted)
    result = subprocess.run([str(python), "-c", check], capture_output=True, text=True, check=False, cwd=VENVS)
    if result.returncode != 0:
        return False, (result.stderr.strip().splitlines() or ["import failed"])[-1]
    return True, ""


def ensure_peers(wanted: list[str]) -> dict[str, str]:
    """Peer environments; returns {peer: reason} for those that cannot run."""
    shared = dist_versions(OURS_PY, SHARED_DISTS)
    pins = [f"{name}=={version}" for name, version in sorted(shared.items())]
    missing: dict[str, str] = {}
    for peer in wanted:
        spec = PEERS[peer]
        ok, why = ensure_venv(peer, [*spec["packages"], *pins], spec["check"])
        if not ok:
            missing[peer] = why
    return missing


# -- servers --------------------------------------------------------------------------------


class Server:
    """One app server subprocess on 127.0.0.1 (in bench/apps, so only its venv's SDK is importable)."""

    def __init__(self, framework: str, variant: str, sink: str, sdk_path: str | None) -> None:
        self.framework = framework
        self.variant = variant
        self.port = free_port()
        bindir = venv_python(variant).parent
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_CONFIG")}
        if variant[5:] in CONFIGS:
            env["BENCH_CONFIG"] = CONFIGS[variant[5:]]
        elif variant.startswith("ours@"):
            sdk_path = COMPARE[variant[5:]]
        elif variant != "ours":
            sdk_path = None
        env.update(
            BENCH_SDK="none" if variant == "bare" else "ours" if is_ours(variant) else variant,
            BENCH_KEY=sink_key(variant),
            BENCH_SINK=sink,
            README_METRICS_SERVER=sink,
            PYTHONPATH=(sdk_path + os.pathsep if sdk_path else "") + str(APPS),
        )
        if framework == "flask":
            argv = [str(bindir / "gunicorn"), "-k", "gthread", "--threads", "8", "-w", "1"]
            argv += ["-b", f"127.0.0.1:{self.port}", "--no-control-socket", "--graceful-timeout", "10"]
            argv += ["--log-level", "warning", "flask_app:app"]
        else:
            argv = [str(bindir / "uvicorn"), "--host", "127.0.0.1", "--port", str(self.port)]
            argv += ["--no-access-log", "--log-level", "warning", "fastapi_app:app"]
        self.log_path = RESULTS / f"server-{framework}-{variant}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, cwd=APPS, env=env, stdout=self._log, stderr=self._log, start_new_session=True
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # never leave a server behind in its own session
            raise

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited early: {self.log_tail()}")
            try:
                status, _ = http_get(self.port, "/ping")
                if status == 200:
                    return
                raise RuntimeError(f"GET /ping answered {status}: {self.log_tail()}")
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"not ready in {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    @property
    def app_pid(self) -> int:
        """The process that runs the app: gunicorn's (only) worker, or uvicorn itself."""
        if self.framework == "fastapi":
            return self.proc.pid
        for _ in range(100):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise RuntimeError("gunicorn has no worker")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu(server: Server) -> dict[str, float]:
    """CPU seconds used so far by each process of the server's tree, by role: ``app`` (the
    process that runs the app: uvicorn, or gunicorn's worker), ``master`` (gunicorn's
    arbiter), ``children`` (processes the app's process started: a delivery process)."""
    out = {"app": 0.0, "master": 0.0, "children": 0.0}
    app = server.app_pid
    with contextlib.suppress(OSError):
        out["app"] = cpu_seconds(app)
        if app != server.proc.pid:
            out["master"] = cpu_seconds(server.proc.pid)
        todo = child_pids(app)
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                out["children"] += cpu_seconds(pid)
                todo += child_pids(pid)
    return out


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """A tiny GET on a fresh connection: (status, head+body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


@contextlib.contextmanager
def sink_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "sink.py"), str(port)], start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                sink_stats(url)
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


# -- wrk ------------------------------------------------------------------------------------


@dataclass
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    #: CPU µs per request of the server's process tree, by role (see :func:`tree_cpu`).
    cpu_us: dict[str, float] = field(default_factory=dict)

    @property
    def total_cpu_us(self) -> float:
        return sum(self.cpu_us.values())


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unreadable latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def measured_wrk(server: Server, endpoint: str, duration: float, connections: int) -> WrkRun:
    """:func:`wrk` against ``server``, with the CPU its whole process tree used per request."""
    before = tree_cpu(server)
    run = wrk(server.port, endpoint, duration, connections)
    after = tree_cpu(server)
    if run.requests:
        run.cpu_us = {role: (after[role] - before[role]) * 1e6 / run.requests for role in after}
    return run


def wrk(port: int, endpoint: str, duration: float, connections: int) -> WrkRun:
    seconds = max(1, round(duration))  # wrk takes whole seconds
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if endpoint in ("echo", "audit"):
        argv += ["-s", str(BENCH / f"{endpoint}.lua")]
    argv.append(f"http://127.0.0.1:{port}/{endpoint}")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m[1])
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    return WrkRun(rps, p50, p99, requests, errors)


# -- throughput -----------------------------------------------------------------------------


@dataclass
class CaseResult:
    framework: str
    endpoint: str
    runs: dict[str, list[WrkRun]] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    posts: dict[str, int] = field(default_factory=dict)
    #: Audit case: the ``AUDIT-END`` markers and the bytes the sink received per variant.
    audit_ends: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)
    sink_bytes: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)

    def ratios(self, variant: str) -> list[float]:
        return [w.rps / b.rps for w, b in zip(self.runs[variant], self.runs["bare"], strict=True)]

    def cpu_ratios(self, variant: str) -> list[float]:
        """Bare CPU per request ÷ wrapped, round by round (1: the SDK costs nothing)."""
        return [
            b.total_cpu_us / w.total_cpu_us
            for w, b in zip(self.runs[variant], self.runs["bare"], strict=True)
            if w.total_cpu_us
        ]

    def added_p99(self, variant: str) -> list[float]:
        return [w.p99_ms - b.p99_ms for w, b in zip(self.runs[variant], self.runs["bare"], strict=True)]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for variant, runs in self.runs.items():
            row: dict[str, Any] = {
                "rps": statistics.median(r.rps for r in runs),
                "p50_ms": statistics.median(r.p50_ms for r in runs),
                "p99_ms": statistics.median(r.p99_ms for r in runs),
                "errors": sum(r.errors for r in runs),
                "cpu_us": statistics.median(r.total_cpu_us for r in runs),
                "cpu_us_by_process": {
                    role: statistics.median(r.cpu_us.get(role, 0.0) for r in runs) for role in runs[0].cpu_us
                },
            }
            if variant != "bare":
                ratios = self.ratios(variant)
                row.update(
                    ratio=statistics.median(ratios),
                    ratio_min=min(ratios),
                    ratio_max=max(ratios),
                    added_p99_ms=statistics.median(self.added_p99(variant)),
                    cpu_ratio=statistics.median(self.cpu_ratios(variant) or [float("nan")]),
                    added_cpu_us=statistics.median(
                        w.total_cpu_us - b.total_cpu_us for w, b in zip(runs, self.runs["bare"], strict=True)
                    ),
                    served=self.served.get(variant, 0),
                    delivered=self.delivered.get(variant, 0),
                    posts=self.posts.get(variant, 0),
                )
                if self.endpoint == "audit":
                    row.update(
                        audit_ends=self.audit_ends.get(variant, 0),
                        truncated=self.truncated.get(variant, 0),
                        sink_bytes=self.sink_bytes.get(variant, 0),
                    )
            out[variant] = row
        return out


def throughput(framework: str, variants: list[str], args: argparse.Namespace, sink: str) -> list[CaseResult]:
    servers: dict[str, Server] = {}
    for variant in variants:
        try:
            servers[variant] = Server(framework, variant, sink, args.sdk_path)
        except (RuntimeError, OSError) as exc:
            say(f"  {framework}/{variant}: cannot start the server ({exc}); skipped")
    results = []
    try:
        if "bare" not in servers:
            say(f"  {framework}: the bare app does not start; no ratios")
            return []
        for endpoint in args.endpoints:
            case = CaseResult(framework, endpoint)
            before = sink_stats(sink)
            # The outgoing variant runs in the outgoing case only, which runs no peer.
            if endpoint == OUTGOING_CASE:
                active = {v: s for v, s in servers.items() if v in OUTGOING_VARIANTS}
            else:
                active = {v: s for v, s in servers.items() if v != "ours@outgoing"}
            if endpoint == OUTGOING_CASE and "ours@outgoing" not in active:
                say(f"  {framework} /{endpoint}: needs the ours@outgoing variant; skipped")
                continue
            for variant, server in active.items():  # warm-up: imports, first connections, caches
                case.served[variant] = wrk(server.port, endpoint, args.warmup, args.connections).requests
            order = list(active)
            for r in range(args.rounds):
                rotated = order[r % len(order) :] + order[: r % len(order)]
                for variant in rotated:
                    run = measured_wrk(active[variant], endpoint, args.duration, args.connections)
                    case.runs.setdefault(variant, []).append(run)
                    case.served[variant] += run.requests
                bare = case.runs["bare"][-1]
                line = [f"round {r + 1}: bare {bare.rps:7.0f}/s {bare.total_cpu_us:4.0f} us CPU/req"]
                line += [
                    f"{v} {case.runs[v][-1].rps / bare.rps:.2f}"
                    f" (CPU {bare.total_cpu_us / max(case.runs[v][-1].total_cpu_us, 1e-9):.2f})"
                    for v in rotated
                    if v != "bare"
                ]
                say(f"    {framework} /{endpoint} " + ", ".join(line))
            time.sleep(3.0)  # let every SDK flush (Moesif batches every 2 s)
            after = sink_stats(sink)
            for variant in active:
                if variant != "bare":
                    key = sink_key(variant)
                    for what, into in (
                        ("events", case.delivered),
                        ("posts", case.posts),
                        ("audit_ends", case.audit_ends),
                        ("truncated", case.truncated),
                        ("bytes", case.sink_bytes),
                    ):
                        into[variant] = after.get(key, {}).get(what, 0) - before.get(key, {}).get(what, 0)
            print_case(case)
            results.append(case)
    finally:
        for server in servers.values():
            server.stop()
    return results


def split_cpu(row: dict[str, Any]) -> str:
    """``app 180 + master 2 + children 40`` (µs per request), the roles that used any."""
    parts = [f"{role} {us:.0f}" for role, us in row.get("cpu_us_by_process", {}).items() if us >= 0.5]
    return " + ".join(parts) or "-"


def args_rounds(case: CaseResult) -> int:
    """wrk runs of ``case`` per variant: each may end with an upload cut by wrk itself
    (the app then got, and the log has, less than the whole body: not the SDK's cut)."""
    return len(case.runs.get("bare", [])) + 1


def print_case(case: CaseResult) -> None:
    summary = case.summary()
    bare = summary["bare"]
    say(
        f"  {case.framework} /{case.endpoint}: bare {bare['rps']:.0f} req/s, p99 {bare['p99_ms']:.2f} ms,"
        f" CPU {bare['cpu_us']:.0f} us/req ({split_cpu(bare)})"
    )
    for variant, row in summary.items():
        if variant == "bare":
            continue
        say(
            f"    {label(variant):<28} ratio {row['ratio']:.2f} [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}]"
            f"  {row['rps']:7.0f} req/s  p99 {row['p99_ms']:6.2f} ms ({row['added_p99_ms']:+.2f})"
            f"  CPU {row['cpu_us']:.0f} us/req ({row['added_cpu_us']:+.0f}; {split_cpu(row)})"
            f" ratio {row['cpu_ratio']:.2f}"
            f"  delivered {row['delivered']}/{row['served']} in {row['posts']} posts"
            + (f"  errors {row['errors']}" if row["errors"] else "")
        )
        if case.endpoint == "audit" and is_ours(variant):
            whole = row["audit_ends"] // AUDIT_ENDS_PER_LOG
            per_log = row["sink_bytes"] / max(row["delivered"], 1)
            ok = not row["truncated"] and whole >= row["delivered"] - 2 * args_rounds(case)
            say(
                f"    audit: {whole} whole logs (both 1 MB bodies) of {row['delivered']} delivered"
                f" ({row['served']} served; the rest dropped: queue_full), {row['truncated']} cut by the SDK,"
                f" {per_log / 1e6:.2f} MB per log at the sink: {'bodies arrive whole' if ok else 'BODIES CUT'}"
                f"; throughput ratio {row['ratio']:.2f} (target >= {TARGETS['ratio']:.2f}),"
                f" added p99 {row['added_p99_ms']:+.2f} ms (target <= {AUDIT_ADDED_P99_MS:g} ms)"
            )
    if "ours@outgoing" in summary and "ours" in summary:  # what outgoing capture adds to incoming logs
        with_calls, without = summary["ours@outgoing"], summary["ours"]
        say(
            f"    outgoing capture alone (ours@outgoing - ours): CPU {with_calls['cpu_us'] - without['cpu_us']:+.0f}"
            f" us/req, p99 {with_calls['p99_ms'] - without['p99_ms']:+.2f} ms (2 logs per request: the call's too)"
        )


# -- time to first byte and peak RSS ---------------------------------------------------------


def first_byte(port: int, path: str = "/stream") -> tuple[float, float]:
    """(ms to the first body byte, ms to the end) of one GET, on a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        start = time.perf_counter()
        sock.sendall(request)
        data = b""
        first = None
        while chunk := sock.recv(65536):
            data += chunk
            if first is None:
                _head, sep, body = data.partition(b"\r\n\r\n")
                if sep and body:
                    first = time.perf_counter()
        end = time.perf_counter()
    if first is None:
        raise RuntimeError("no body received")
    return (first - start) * 1000, (end - start) * 1000


def rss_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def stream_big(port: int) -> int:
    """GET /big and discard it; the bytes received."""
    total = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        buf = bytearray(1 << 20)
        while n := sock.recv_into(buf):
            total += n
    return total


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid``, whichever of its threads started them."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def peak_rss(server: Server, settle: float = 1.5) -> dict[str, float]:
    """RSS growth (MiB) of the app's process while /big streams through, over idle; and
    of its child processes (our SDK's delivery process), if it has any."""
    pid = server.app_pid
    for _ in range(20):
        http_get(server.port, "/ping")
    first_byte(server.port)
    time.sleep(0.3)
    idle = rss_kib(pid)
    peak = idle["VmRSS"]
    children = child_pids(pid)
    child_idle = {c: rss_kib(c) for c in children}
    child_peak = {c: r["VmRSS"] for c, r in child_idle.items()}
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kib(pid)["VmRSS"])
            for c in children:
                with contextlib.suppress(OSError):
                    child_peak[c] = max(child_peak[c], rss_kib(c)["VmRSS"])
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    received = stream_big(server.port)
    seconds = time.perf_counter() - started
    time.sleep(settle)  # the worker builds and sends the log after the response
    stop.set()
    sampler.join()
    after = rss_kib(pid)
    if after["VmHWM"] > idle["VmHWM"]:
        peak = max(peak, after["VmHWM"])
    out = {
        "idle_mib": idle["VmRSS"] / 1024,
        "growth_mib": (peak - idle["VmRSS"]) / 1024,
        "received_mb": received / 1e6,
        "seconds": seconds,
    }
    for c, before in child_idle.items():
        with contextlib.suppress(OSError):
            hwm = rss_kib(c)["VmHWM"]
            if hwm > before["VmHWM"]:
                child_peak[c] = max(child_peak[c], hwm)
    if children:
        out["child_idle_mib"] = sum(r["VmRSS"] for r in child_idle.values()) / 1024
        out["child_growth_mib"] = sum(child_peak[c] - child_idle[c]["VmRSS"] for c in children) / 1024
    return out


def streaming(framework: str, variants: list[str], args: argparse.Namespace, sink: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in variants:
        try:
            server = Server(framework, variant, sink, args.sdk_path)
        except (RuntimeError, OSError) as exc:
            say(f"  {framework}/{variant}: cannot start the server ({exc}); skipped")
            continue
        try:
            first_byte(server.port)  # warm-up
            tries = [first_byte(server.port) for _ in range(args.ttfb_tries)]
            row: dict[str, Any] = {
                "ttfb_ms": statistics.median(t[0] for t in tries),
                "total_ms": statistics.median(t[1] for t in tries),
            }
            if not args.no_rss:
                row.update(peak_rss(server))
            out[variant] = row
        except (RuntimeError, OSError) as exc:
            say(f"  {framework}/{variant}: streaming failed ({exc})")
        finally:
            server.stop()
    bare = out.get("bare", {}).get("ttfb_ms")
    for variant, row in out.items():
        added = "" if bare is None or variant == "bare" else f" ({row['ttfb_ms'] - bare:+.1f})"
        line = f"    {label(variant):<28} TTFB {row['ttfb_ms']:6.1f} ms{added}  total {row['total_ms']:6.0f} ms"
        if "growth_mib" in row:
            line += (
                f"  RSS idle {row['idle_mib']:5.1f} MiB, +{row['growth_mib']:6.1f} MiB while streaming"
                f" {row['received_mb']:.0f} MB ({row['seconds']:.1f} s)"
            )
        if "child_growth_mib" in row:
            line += f"; delivery process idle {row['child_idle_mib']:5.1f} MiB, +{row['child_growth_mib']:.1f} MiB"
        say(line)
    return out


# -- delivery rate --------------------------------------------------------------------------


def delivery_rate(args: argparse.Namespace, sink: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for suffix, sdk_path in [("", args.sdk_path), *((f"@{n}", d) for n, d in COMPARE.items())]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "README_METRICS_SERVER")}
        if sdk_path:
            env["PYTHONPATH"] = sdk_path
        argv = [str(OURS_PY), str(BENCH / "delivery_rate.py"), "--url", sink, "--events", str(args.events), "--json"]
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            say(f"  delivery rate{suffix} failed: {result.stderr.strip()[-500:]}")
            continue
        data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        for name, row in data.items():
            out[name + suffix] = row
            say(
                f"    {name + suffix:<14} {row['events_per_s']:8.0f} events/s  ({row['events']} events,"
                f" {row['posts']} posts, {row['seconds']:.2f} s; CPU {row['app_cpu_us']:.0f} us/event:"
                f" {1e6 / row['app_cpu_us']:.0f} events/s per core; build {row['build_us']:.0f} us/event,"
                f" build and encode {row['encode_us']:.0f} us/event)"
            )
    return out


# -- profiling ------------------------------------------------------------------------------


def profile(args: argparse.Namespace, sink: str) -> None:
    ok, why = ensure_venv("tools", ["py-spy", "pyinstrument"], "import pyinstrument")
    if not ok:
        say(f"profiling needs py-spy: {why}")
        return
    pyspy = VENVS / "tools" / "bin" / "py-spy"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for framework in args.frameworks:
        server = Server(framework, "ours", sink, args.sdk_path)
        try:
            for endpoint in args.endpoints:
                wrk(server.port, endpoint, args.warmup, args.connections)
                base = RESULTS / f"profile-{framework}-{endpoint}-{stamp}"
                procs = []
                for fmt, gil in (("raw", True), ("speedscope", False)):
                    out = f"{base}{'-gil' if gil else ''}.{'txt' if fmt == 'raw' else 'json'}"
                    argv = [str(pyspy), "record", "--pid", str(server.app_pid), "--rate", "200", "--threads"]
                    argv += ["--duration", f"{args.duration:g}", "--format", fmt, "--output", out, "--nonblocking"]
                    if gil:
                        argv.append("--gil")
                    procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
                time.sleep(0.5)
                run = wrk(server.port, endpoint, args.duration, args.connections)
                for proc in procs:
                    proc.wait(60)
                say(f"  {framework} /{endpoint}: {run.rps:.0f} req/s under py-spy; {base}-gil.txt, {base}.json")
                summarize_profile(Path(f"{base}-gil.txt"))
        finally:
            server.stop()


#: SDK functions that hand control to the app or the server: time below them is theirs.
PASS_THROUGH = {
    "WsgiMetricsMiddleware.__call__",
    "_Response.__iter__",
    "_Response.close",
    "_InputCopy.read",
    "_InputCopy.readline",
    "_InputCopy.readlines",
    "_InputCopy.__iter__",
    "_Exchange.start_response.<locals>._start_response",
    "_Exchange.start_response.<locals>._start_response.<locals>._write",
    "AsgiMetricsMiddleware.__call__",
    "_Exchange.receive",
    "_Exchange.send",
}


def summarize_profile(path: Path, top: int = 14) -> None:
    """Who holds the GIL: the worker thread, the SDK on the request path, the app and server.

    A sample counts for the SDK when its innermost SDK frame is the leaf, or calls a library
    on the SDK's behalf (werkzeug, json, requests...); below a pass-through frame (the SDK
    calling the app, or reading from the server) it counts for the app.
    """
    if not path.exists():
        say(f"    (no profile written: {path.name})")
        return
    kinds: dict[str, int] = {}
    where: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f.strip() for f in stack.split(";")]
        total += count
        worker = "readme-metrics-worker" in frames[0] or any(f.startswith("Client._run (") for f in frames)
        sdk_at = [i for i, f in enumerate(frames) if "readme_metrics" in f]
        if worker:
            kind = "SDK worker thread"
        elif not sdk_at:
            kind = "app + server"
        else:
            i = sdk_at[-1]
            name = short_frame(frames[i]).split(":", 1)[1]
            kind = "app + server" if i < len(frames) - 1 and name in PASS_THROUGH else "SDK request path"
        kinds[kind] = kinds.get(kind, 0) + count
        if kind.startswith("SDK") and sdk_at:
            i = sdk_at[-1]
            key = ("worker  " if worker else "request ") + short_frame(frames[i])
            if i < len(frames) - 1:
                key += " -> " + library_of(frames[i + 1])
            where[key] = where.get(key, 0) + count
    if not total:
        return
    order = ("app + server", "SDK request path", "SDK worker thread")
    say("    GIL samples: " + ", ".join(f"{k} {kinds.get(k, 0) / total:.1%}" for k in order))
    say("    where the SDK's share goes (innermost SDK frame -> library it was in):")
    for key, count in sorted(where.items(), key=lambda kv: -kv[1])[:top]:
        say(f"      {count / total:6.1%}  {key}")


def library_of(frame: str) -> str:
    """'func (/x/site-packages/requests/sessions.py:12)' -> 'requests'."""
    match = re.match(r".*? \((.*):\d+\)", frame)
    if not match:
        return frame
    path = match[1].split("site-packages/", 1)[-1]
    return path.lstrip("/").split("/", 1)[0].removesuffix(".py")


def short_frame(frame: str) -> str:
    """'func (readme_metrics/x.py:12)' -> 'x.py:func'."""
    match = re.match(r"(.*?) \((?:.*/)?([^/]+\.py):\d+\)", frame.strip())
    return f"{match[2]}:{match[1]}" if match else frame.strip()


# -- main -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per server and case")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("--quick", action="store_true", help="3 rounds of 2 s: a smoke run, noisier")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="flask,fastapi")
    p.add_argument(
        "--endpoints",
        default=",".join(ENDPOINTS),
        help="the cases: ping,echo,call (default; call: one outgoing httpx call per request, run bare,"
        " ours and ours@outgoing = capture_outgoing=True), and audit (1 MB JSON each way, whole bodies),"
        " quiet (log=False)",
    )
    p.add_argument("--variants", default="ours,readme340,moesif", help="SDKs beside the bare app")
    p.add_argument("--no-peers", action="store_true", help="only this repository's SDK")
    p.add_argument("--sdk-path", help="run 'ours' from DIR/readme_metrics (to measure a change)")
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also run DIR/readme_metrics as variant ours@NAME, interleaved with the others (repeatable)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="also run this repository's SDK with these MetricsApiConfig options (a JSON object,"
        " e.g. '{\"log_body\": false}') as variant ours@NAME, in the throughput and streaming parts (repeatable)",
    )
    p.add_argument(
        "--destinations",
        action="store_true",
        help="also run this repository's SDK exporting to a JSON-lines file (ours@jsonl) and over"
        " OTLP/HTTP JSON to the sink (ours@otlp), in the same rounds: the cost of each destination",
    )
    p.add_argument("--only", default="throughput,streaming,delivery", help="parts to run")
    p.add_argument("--ttfb-tries", type=int, default=5)
    p.add_argument("--no-rss", action="store_true", help="skip the 100 MB peak-RSS measure")
    p.add_argument("--events", type=int, default=20_000, help="events for the delivery rate")
    p.add_argument("--profile", action="store_true", help="record py-spy profiles of the wrapped servers")
    p.add_argument("--table", metavar="JSON", help="print the markdown tables of a results file, run nothing")
    p.add_argument("--json", dest="json_out", help="write the results here (default bench/results/<time>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 2.0, 3, 1.0
    args.frameworks = [f for f in args.frameworks.split(",") if f]
    args.endpoints = [e for e in args.endpoints.split(",") if e]
    unknown = set(args.endpoints) - set(ENDPOINTS + MORE_ENDPOINTS)
    if unknown:
        p.error(f"--endpoints: unknown {', '.join(sorted(unknown))} (known: {', '.join(ENDPOINTS + MORE_ENDPOINTS)})")
    variants = [v for v in args.variants.split(",") if v and v != "bare"]
    if args.no_peers:
        variants = [v for v in variants if v == "ours"]
    args.variants = variants
    args.only = set(args.only.split(","))
    for item in args.compare:
        name, sep, where = item.partition("=")
        if not sep or not (Path(where) / "readme_metrics" / "__init__.py").exists():
            p.error(f"--compare {item}: give NAME=DIR, DIR holding a readme_metrics package")
        COMPARE[name] = str(Path(where).resolve())
        args.variants.append(f"ours@{name}")
    for item in args.config:
        name, sep, options = item.partition("=")
        try:
            valid = sep and isinstance(json.loads(options), dict) and name not in COMPARE
        except ValueError:
            valid = False
        if not valid:
            p.error(f"--config {item}: give NAME=JSON (a JSON object of MetricsApiConfig options), NAME new")
        CONFIGS[name] = options
        args.variants.append(f"ours@{name}")
    if args.destinations:
        where = tempfile.mkdtemp(prefix="readme-metrics-bench-")  # the files go when the run ends
        atexit.register(shutil.rmtree, where, True)
        for name, spec in (("jsonl", f"jsonl:{where}/{{pid}}.jsonl"), ("otlp", "otlp:{sink}")):
            CONFIGS[name] = json.dumps({"exporters_env": spec})
            args.variants.append(f"ours@{name}")
    if OUTGOING_CASE in args.endpoints and "ours@outgoing" not in args.variants:
        CONFIGS["outgoing"] = json.dumps({"capture_outgoing": True})
        args.variants.append("ours@outgoing")
    if args.sdk_path:
        args.sdk_path = str(Path(args.sdk_path).resolve())
        if not (Path(args.sdk_path) / "readme_metrics" / "__init__.py").exists():
            p.error(f"--sdk-path: no readme_metrics package in {args.sdk_path}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.table:
        say(markdown(json.loads(Path(args.table).read_text())))
        return 0
    if shutil.which("wrk") is None:
        say("wrk is not installed. Install it (Debian/Ubuntu): sudo apt-get install -y wrk")
        say("(macOS: brew install wrk). Then run the benchmark again.")
        return 2
    RESULTS.mkdir(exist_ok=True)
    info = machine()
    say(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, {info['date']}")
    say(f"load average at start: {info['loadavg_at_start']} (other work on the machine makes figures noisy)")
    if args.sdk_path:
        say(f"'ours' runs from {args.sdk_path}")
    results: dict[str, Any] = {"machine": info, "args": {k: v for k, v in vars(args).items() if k != "only"}}

    peers = [v for v in args.variants if v in PEERS]
    missing = ensure_peers(peers) if peers and not args.profile else {}
    for peer, why in missing.items():
        say(f"peer {PEERS[peer]['label']}: cannot be installed or run ({why}); left out of this run")
    variants = ["bare"] + [v for v in args.variants if v not in missing]
    versions = {"ours": dist_versions(OURS_PY, SHARED_DISTS)}
    for peer in peers:
        if peer not in missing:
            versions[peer] = dist_versions(venv_python(peer), PEERS[peer]["dists"])
    results["versions"] = versions
    say("versions: " + "; ".join(f"{k}: {v}" for k, v in versions.items()))

    with sink_process() as sink:
        if args.profile:
            profile(args, sink)
            return 0
        if "throughput" in args.only:
            say(
                f"\n== throughput: {args.rounds} rounds x {args.duration:g} s per server, wrk -c{args.connections}"
                ", interleaved =="
            )
            cases = []
            for framework in args.frameworks:
                cases += throughput(framework, variants, args, sink)
            results["throughput"] = [
                {"framework": c.framework, "endpoint": c.endpoint, "summary": c.summary()} for c in cases
            ]
        if "streaming" in args.only:
            say("\n== streaming: time to first byte (5 chunks, 200 ms apart) and peak RSS while streaming 100 MB ==")
            results["streaming"] = {}
            for framework in args.frameworks:
                say(f"  {framework}:")
                results["streaming"][framework] = streaming(framework, variants, args, sink)
        if "delivery" in args.only:
            say(f"\n== delivery rate: {args.events} events built, encoded and posted by one process ==")
            results["delivery"] = delivery_rate(args, sink)

    say("\n" + verdict(results))
    say("\n" + markdown(results))
    out = Path(args.json_out) if args.json_out else RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    say(f"results: {out}")
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The results as the tables of docs/benchmarks.md."""
    m = results["machine"]
    a = results.get("args", {})
    out = [
        f"Run {m['date']} on {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, Linux {m['kernel']};"
        f" load average at start {m['loadavg_at_start']}; {a.get('rounds')} rounds x {a.get('duration')} s,"
        f" wrk -c{a.get('connections')}." + (f" 'ours' from `{a['sdk_path']}`." if a.get("sdk_path") else ""),
        "",
        "| case | SDK | CPU µs/req (added) | CPU ratio | req/s | ratio (min-max) | p99 ms | added p99 ms"
        " | delivered / served (posts) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in results.get("throughput", []):
        name = f"{case['framework']} {CASE_NAMES.get(case['endpoint'], case['endpoint'])}"
        for variant, row in case["summary"].items():
            if variant == "bare":
                out.append(
                    f"| {name} | bare | {row.get('cpu_us', float('nan')):.0f} | 1 | {row['rps']:.0f} | 1"
                    f" | {row['p99_ms']:.2f} | | |"
                )
                continue
            out.append(
                f"| {name} | {label(variant)} | {row.get('cpu_us', float('nan')):.0f}"
                f" ({row.get('added_cpu_us', float('nan')):+.0f}) | **{row.get('cpu_ratio', float('nan')):.2f}**"
                f" | {row['rps']:.0f} | **{row['ratio']:.2f}**"
                f" ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | {row['p99_ms']:.2f}"
                f" | {row['added_p99_ms']:+.2f} | {row['delivered']} / {row['served']} ({row.get('posts', '?')}) |"
            )
    if results.get("streaming"):
        out += [
            "",
            "| server | SDK | TTFB ms (added) | RSS idle MiB | RSS growth streaming 100 MB, MiB"
            " | delivery process: RSS idle, growth MiB |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for framework, rows in results["streaming"].items():
            bare = rows.get("bare", {}).get("ttfb_ms")
            for variant, row in rows.items():
                added = "" if bare is None or variant == "bare" else f" ({row['ttfb_ms'] - bare:+.1f})"
                rss = f"{row['idle_mib']:.1f} | {row['growth_mib']:.1f}" if "growth_mib" in row else "- | -"
                child = (
                    f"{row['child_idle_mib']:.1f}, +{row['child_growth_mib']:.1f}" if "child_growth_mib" in row else "-"
                )
                out.append(f"| {framework} | {label(variant)} | {row['ttfb_ms']:.1f}{added} | {rss} | {child} |")
    if results.get("delivery"):
        out += [
            "",
            "| delivery | events/s | posts | build µs/event | build + encode µs/event | CPU µs/event (all of it) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, row in results["delivery"].items():
            out.append(
                f"| {name} | {row['events_per_s']:.0f} | {row['posts']} | {row['build_us']:.0f}"
                f" | {row['encode_us']:.0f} | {row.get('app_cpu_us', float('nan')):.0f} |"
            )
    return "\n".join(out)


def verdict(results: dict[str, Any]) -> str:
    """The targets of issue 6, met or not, for this repository's SDK."""
    lines = ["== targets (this repository's SDK) =="]
    for case in results.get("throughput", []):
        outgoing = case["endpoint"] == OUTGOING_CASE
        row = case["summary"].get("ours@outgoing" if outgoing else "ours")
        if row is None:
            continue
        name = f"{case['framework']} /{case['endpoint']}" + (" (ours@outgoing)" if outgoing else "")
        ok = row.get("cpu_ratio", 0) >= TARGETS["cpu_ratio"]
        lines.append(
            f"  {'PASS' if ok else 'MISS'} {name:<16} CPU ratio {row.get('cpu_ratio', float('nan')):.2f}"
            f" ({row.get('added_cpu_us', float('nan')):+.0f} us/req, all processes) (>= 0.87)"
        )
        ok = row["ratio"] >= TARGETS["ratio"]
        lines.append(f"  {'PASS' if ok else 'MISS'} {name:<16} throughput ratio {row['ratio']:.2f} (>= 0.90)")
        ok = row["added_p99_ms"] <= TARGETS["added_p99_ms"]
        lines.append(f"  {'PASS' if ok else 'MISS'} {name:<16} added p99 {row['added_p99_ms']:+.2f} ms (<= 1 ms)")
    for framework, rows in results.get("streaming", {}).items():
        if "ours" in rows and "bare" in rows:
            added = rows["ours"]["ttfb_ms"] - rows["bare"]["ttfb_ms"]
            ok = added <= TARGETS["ttfb_ms"]
            lines.append(f"  {'PASS' if ok else 'MISS'} {framework:<16} TTFB {added:+.1f} ms over bare (<= 10 ms)")
        if "growth_mib" in rows.get("ours", {}):
            limit = 2 * DEFAULT_MAX_BODY / 2**20
            ours = rows["ours"]
            growth = ours["growth_mib"] + ours.get("child_growth_mib", 0.0)  # the SDK's memory, all of it
            parts = ""
            if "child_growth_mib" in ours:
                parts = f" (app +{ours['growth_mib']:.1f}, delivery process +{ours['child_growth_mib']:.1f})"
            lines.append(
                f"  {'PASS' if growth <= limit else 'MISS'} {framework:<16} RSS +{growth:.1f} MiB streaming 100 MB"
                f"{parts} (<= {limit:g} MiB = 2 x max_body_bytes)"
            )
    row = results.get("delivery", {}).get("default")
    if row:
        per_core = 1e6 / row["app_cpu_us"]
        ok = per_core >= TARGETS["delivery_eps"]
        lines.append(f"  {'PASS' if ok else 'MISS'} delivery rate    {per_core:.0f} events/s per core (>= 30,000)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
