"""The main job: the SDK, an example API and the local collector, end to end on this machine.

    python3 dev.py demo            # builds .venv, then runs this file
    .venv/bin/python examples/demo.py [--no-wait] [--port 8787] [--db FILE]

What it does, with nothing but Python and no network (everything is on 127.0.0.1):

1. starts the local collector and its dashboard (``readme_metrics.collector``) on a thread;
2. starts the example Flask API (``examples/flask/app.py``, wrapped by the SDK with
   ``denylist=["password", "token"]``) under a real HTTP server, pointed at the collector
   through ``README_METRICS_SERVER``;
3. sends it a varied burst of traffic: several endpoints and callers, client and server
   errors, a streamed response, and logins whose JSON body carries a password;
4. waits until every exchange has arrived at the collector, then prints the dashboard URL
   and a summary of what arrived: counts by status and endpoint, latency percentiles,
   callers, the password as it was stored (redacted) and the documentation link;
5. keeps the collector running until Ctrl-C (or SIGTERM) so the dashboard can be
   explored; with ``--no-wait``, when standard input is not a terminal, or when ``CI`` is
   set, it exits after the summary, and says that the dashboard stops with it (and how to
   keep the logs: ``--db FILE``, then ``readme-metrics serve --db FILE``).

However it stops (end, Ctrl-C, SIGTERM, SIGHUP), its temporary database directory is removed.

It exits non-zero if a log is missing or if the secret reached the collector's database.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where examples/flask would
# hide the real flask package: import from the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "examples"]
sys.path.insert(0, str(ROOT))

from readme_metrics.collector import Collector, Storage  # noqa: E402

PASSWORD = "correct horse battery staple"
DEFAULT_PORT = 8787


def start_collector(port: int, db: Path) -> Collector:
    storage = Storage(db)
    for candidate in dict.fromkeys([port, 0]):
        try:
            return Collector(storage, "127.0.0.1", candidate).start()
        except OSError:
            continue
    raise SystemExit("cannot listen on 127.0.0.1")


def start_app(collector_url: str) -> tuple[Any, Any, str]:
    """The example Flask app, wrapped by the SDK, under werkzeug's threaded HTTP server."""
    os.environ["README_METRICS_SERVER"] = collector_url  # read when the app's config is built
    from werkzeug.serving import make_server

    from examples.flask.app import app, config

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="demo-app", daemon=True).start()
    return server, config, f"http://127.0.0.1:{server.server_port}"


class Traffic:
    """The burst of requests, with what each response said."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self.doc_links: list[str] = []
        self.streamed: dict[str, Any] = {}

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        stream: bool = False,
        logged: bool = True,
        tenant: str | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"User-Agent": "readme-metrics-demo"}
        data = None
        if key:
            headers["X-Api-Key"] = key
        if tenant:
            headers["X-Tenant"] = tenant
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            if stream:
                chunks, first, start = [], None, time.monotonic()
                while piece := response.read1(65536):
                    first = first if first is not None else time.monotonic() - start
                    chunks.append(piece)
                payload = b"".join(chunks)
                self.streamed = {
                    "chunks": len(chunks),
                    "transfer_encoding": response.getheader("Transfer-Encoding"),
                    "first_byte_s": first,
                    "total_s": time.monotonic() - start,
                }
            else:
                payload = response.read()
            link = response.getheader("x-documentation-url")
            if link:
                self.doc_links.append(link)
            self.sent += logged
            return response.status, payload
        finally:
            conn.close()

    def burst(self) -> None:
        callers = ["customer-1234", "customer-5678", "customer-9012", None]
        for i in range(12):
            self.call("GET", f"/hello?name=visitor{i}", key=callers[i % len(callers)])
        for user in ("ada", "grace", "linus"):
            status, _ = self.call("POST", "/login", key="customer-1234", body={"user": user, "password": PASSWORD})
            assert status == 200, status
        for user in ("mallory", "eve"):
            status, _ = self.call(
                "POST", "/login", key="customer-5678", body={"user": user, "password": "guess" + user}
            )
            assert status == 401, status
        status, payload = self.call("GET", "/countdown", key="customer-9012", stream=True)
        assert status == 200 and payload.endswith(b"liftoff\n"), payload
        self.call("GET", "/countdown", key="customer-1234")
        for _ in range(2):
            assert self.call("GET", "/fail", key="customer-9012")[0] == 500
        for path in ("/missing", "/hello/extra"):
            assert self.call("GET", path, key="customer-5678")[0] == 404
        for item in (7, 42, 1001):  # three paths, one route template
            assert self.call("GET", f"/items/{item}", key="customer-5678", tenant="acme")[0] == 200
        assert self.call("GET", "/health", logged=False)[0] == 200  # Route(log=False): never logged
        for i in range(4):  # later requests carry the documentation link once the SDK learned it
            self.call("GET", f"/hello?name=again{i}", key="customer-1234")
            if self.doc_links:
                break
            time.sleep(0.2)


def where_to_look(collector: Collector, db: Path, *, stays: bool, kept: bool) -> None:
    """The dashboard URL, and whether it stays: when the demo exits now, say that the
    dashboard stops with it and how to see the logs again. ``kept``: the database
    outlives the demo (``--db``); else it is a temporary one, removed at exit."""
    if stays:
        out = [f"Dashboard: {collector.url}/      (database: {db})"]
    else:
        out = [
            f"Dashboard: {collector.url}/ stopped: the demo exits now (no terminal, --no-wait, CI or a failure),",
            "and its collector and dashboard with it. Run `python3 dev.py demo` in a terminal to explore them.",
            f"Logs: {db}; see them again with: readme-metrics serve --db {db}"
            if kept
            else f"Logs: {db}, a temporary database, removed now (keep them with --db FILE,"
            " then: readme-metrics serve --db FILE)",
        ]
    sys.stdout.write("\n".join([*out, ""]) + "\n")
    sys.stdout.flush()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(collector: Collector, count: int, since: float, timeout: float = 20.0) -> float:
    start = time.monotonic()
    while get_json(f"{collector.url}/api/logs?limit=1&since={since}")["total"] < count:
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.05)
    return time.monotonic() - start


def table(rows: list[list[str]], indent: str = "    ") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(collector: Collector, db: Path, app_url: str, traffic: Traffic, since: float, waited: float) -> bool:
    """Print what arrived at the collector (this run's logs only); True if all is well."""
    summary = get_json(f"{collector.url}/api/summary?since={since}")
    ok = summary["total"] == traffic.sent
    out = [
        "",
        f"Sent {traffic.sent} requests to the example API at {app_url}; "
        f"{summary['total']} logs arrived at the collector ({waited:.2f} s after the last response).",
        "",
        "  By status:",
        table([["status", "count"]] + [[s, str(n)] for s, n in summary["statuses"].items()]),
        "",
        "  By endpoint (latency in ms):",
        table(
            [["endpoint", "requests", "errors", "p50", "p95", "p99"]]
            + [
                [e["endpoint"], str(e["count"]), str(e["errors"]), ms(e["p50"]), ms(e["p95"]), ms(e["p99"])]
                for e in summary["endpoints"]
            ]
        ),
        "",
        "  Top callers: " + ", ".join(f"{g['label'] or g['id'][:16]} ({g['count']})" for g in summary["groups"]),
    ]

    logins = get_json(f"{collector.url}/api/logs?endpoint=POST%20/login&status=200&limit=1&since={since}")["logs"]
    stored_text = ""
    if logins:
        log = get_json(f"{collector.url}/api/logs/{logins[0]['id']}")
        entry = log["request"]["log"]["entries"][0]
        stored_text = entry["request"].get("postData", {}).get("text", "")
        response_text = entry["response"]["content"].get("text", "")
        try:
            user = json.loads(stored_text).get("user")
        except (ValueError, AttributeError):
            user = "?"
        out += [
            "",
            "  Redaction (denylist=['password', 'token']):",
            f"    the app received   {json.dumps({'user': user, 'password': PASSWORD})}",
            f"    the collector has  {stored_text}",
            f"    response stored as {response_text}",
        ]
    leaked = any(PASSWORD.encode() in path.read_bytes() for path in db.parent.glob(db.name + "*") if path.is_file())
    redacted = "[REDACTED" in stored_text and PASSWORD not in stored_text
    out.append(
        "    the secret appears nowhere in the collector's database files"
        if not leaked
        else "    ERROR: the secret reached the collector's database"
    )
    ok = ok and redacted and not leaked

    items = [e for e in summary["endpoints"] if e["endpoint"].startswith("GET /items/")]
    if items:
        endpoint = urllib.parse.quote(items[0]["endpoint"])
        tagged = get_json(f"{collector.url}/api/logs?endpoint={endpoint}&limit=1&since={since}")["logs"]
        log = get_json(f"{collector.url}/api/logs/{tagged[0]['id']}") if tagged else {}
        entry = log.get("request", {}).get("log", {}).get("entries", [{}])[0]
        out += [
            "",
            f"  Route templates: /items/7, /items/42 and /items/1001 are one endpoint, {items[0]['endpoint']}"
            f" ({items[0]['count']} requests; the log carries _route: {entry.get('_route')});"
            " /health is never logged (Route(log=False))",
            f"  Metadata stored with each log by the metadata hook: {json.dumps(entry.get('_metadata'))}",
        ]
    if traffic.streamed:
        s = traffic.streamed
        out += [
            "",
            f"  Streamed response (/countdown): {s['chunks']} pieces, Transfer-Encoding: {s['transfer_encoding']}, "
            f"first byte after {s['first_byte_s']:.2f} s, last after {s['total_s']:.2f} s (not buffered by the SDK)",
        ]
    if traffic.doc_links:
        out += [
            "",
            f"  Documentation link on responses: x-documentation-url: {traffic.doc_links[-1]}",
            "    (opens that exchange in the dashboard)",
        ]

    if not ok:
        out.append("DEMO FAILED: " + ("some logs are missing" if summary["total"] != traffic.sent else "redaction"))
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return ok


def _stop(signum: int, frame: Any) -> None:
    """A stop signal: unwind (the finally blocks clean up), then exit 128 + its number."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--no-wait", action="store_true", help="exit after the summary")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"collector port (default {DEFAULT_PORT})")
    parser.add_argument("--db", type=Path, help="SQLite file for the collector (default: a fresh temporary file)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log
    logging.getLogger("examples.flask.app").setLevel(logging.CRITICAL)  # /fail raises on purpose
    # Everything here talks to 127.0.0.1: never through a proxy the environment may name.
    for var in ("no_proxy", "NO_PROXY"):
        os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))

    # SIGTERM (kill, a service manager) and SIGHUP (the terminal closed) end the demo the
    # way Ctrl-C does, through the finally below: by default they would kill the process
    # on the spot and leave the temporary database behind.
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            signal.signal(signum, _stop)

    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="readme-metrics-demo-")
        args.db = Path(tmp.name) / "demo.sqlite3"
    collector = start_collector(args.port, args.db)
    server = None
    try:
        sys.stdout.write(f"Local collector and dashboard: {collector.url}/\n")
        server, _, app_url = start_app(collector.url)
        sys.stdout.write(f"Example Flask API wrapped by the SDK: {app_url}  (README_METRICS_SERVER={collector.url})\n")
        sys.stdout.write("Sending a burst of traffic...\n")
        sys.stdout.flush()
        traffic = Traffic(server.server_port)
        since = time.time() - 1
        traffic.burst()
        waited = wait_for(collector, traffic.sent, since)
        interactive = sys.stdin.isatty() and not os.environ.get("CI")
        ok = report(collector, args.db, app_url, traffic, since, waited)
        stays = ok and not args.no_wait and interactive
        where_to_look(collector, args.db, stays=stays, kept=tmp is None)
        if stays:
            sys.stdout.write(
                "The collector keeps running: open the dashboard above. Try the example app too, e.g.\n"
                f"    curl -H 'X-Api-Key: customer-4242' '{app_url}/hello?name=you'\n"
                "Press Ctrl-C to stop.\n"
            )
            sys.stdout.flush()
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                sys.stdout.write("\nstopping\n")
            except SystemExit:  # SIGTERM, SIGHUP: see _stop
                sys.stdout.write("\nstopping\n")
                raise
        return 0 if ok else 1
    finally:
        if server is not None:
            server.shutdown()
        collector.stop()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
