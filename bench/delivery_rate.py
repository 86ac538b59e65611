"""The delivery rate: events per second built, encoded and posted, and what the app pays.

    .venv/bin/python bench/delivery_rate.py --url http://127.0.0.1:PORT [--events 20000]

Makes ``--events`` realistic captures (a POST with a dozen request headers, a query, 1 KiB
JSON bodies each way), submits them all to a :class:`readme_metrics.delivery.Client`
pointed at the metrics endpoint at ``--url`` (``bench/sink.py``), and times submit to the
return of ``flush()``. The client has the default settings and ``denylist=["password",
"x-secret"]``, and a queue large enough for every event (nothing is dropped).
``app_cpu_us`` is the CPU this process spent per event (submit, build, encode, post), so
``1e6 / app_cpu_us`` is the rate one core sustains. Also timed apart, on a sample:
building one log object (HAR, redaction) and building and encoding it (the worker's
whole step), per event. ``--json`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from readme_metrics import MetricsApiConfig
from readme_metrics.build.har import build_log
from readme_metrics.capture import BodyCopy, Capture
from readme_metrics.delivery import Client

BODY = json.dumps(
    {
        "user": {"id": 12345, "name": "Ada Lovelace", "email": "ada@example.test"},
        "items": [{"sku": f"SKU-{i:05d}", "qty": i % 7 + 1, "note": "benchmark payload"} for i in range(16)],
    },
    separators=(",", ":"),
).encode()
BODY = BODY + b" " * max(0, 1024 - len(BODY))

REQUEST_HEADERS = [
    ("Host", "api.example.test"),
    ("User-Agent", "python-requests/2.31.0"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Accept", "application/json"),
    ("Connection", "keep-alive"),
    ("X-Api-Key", "caller-key-0001"),
    ("X-Request-Id", "7f1c2a0e-3b7d-4c55-9a2e-6f0b1d2c3e4f"),
    ("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz0123456789"),
    ("X-Forwarded-For", "203.0.113.7"),
    ("Cookie", "session=abc123; theme=dark"),
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(BODY))),
]
RESPONSE_HEADERS = [
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(BODY))),
    ("Cache-Control", "no-store"),
    ("x-documentation-url", "https://docs.example.test/logs/7f1c2a0e-3b7d-4c55-9a2e-6f0b1d2c3e4f"),
]


def group(_: Any) -> dict[str, str]:
    return {"api_key": "caller-key-0001", "label": "Bench Caller", "email": "caller@example.test"}


def _body(max_body: int) -> BodyCopy:
    body = BodyCopy(max_body)
    body.add(BODY)  # bytes are kept by reference: no copy per capture
    return body


def make_captures(n: int, max_body: int) -> list[Capture]:
    """``n`` captures, each with its own body copies."""
    captures = []
    for i in range(n):
        capture = Capture(
            method="POST",
            scheme="https",
            host="api.example.test",
            path=f"/v1/orders/{i}",
            query="page=2&sort=desc",
            http_version="HTTP/1.1",
            client_address="203.0.113.7",
            request_headers=REQUEST_HEADERS,
            request_body=_body(max_body),
            response_body=_body(max_body),
            group=group(None),
        )
        capture.response_started(201, RESPONSE_HEADERS, "Created")
        capture.finish(completed=True)
        captures.append(capture)
    return captures


def measure(url: str, events: int, **options: Any) -> dict[str, Any]:
    config = MetricsApiConfig(
        "bench-delivery",
        group,
        metrics_server=url,
        max_queue_events=events + 1,
        max_queue_bytes=2**34,
        denylist=["password", "x-secret"],
        **options,
    )
    client = Client(config)
    captures = make_captures(events, config.max_body_bytes)

    sample = captures[: min(2000, events)]
    builder = client.builder
    started = time.perf_counter()
    for capture in sample:
        build_log(capture, builder.redactor, development=False)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    for capture in sample:
        builder.encode(capture)
    encode_s = time.perf_counter() - started

    client.submit(make_captures(1, config.max_body_bytes)[0])  # the worker and the connection started
    client.flush(timeout=60)
    cpu = time.process_time()
    started = time.perf_counter()
    for capture in captures:
        client.submit(capture)
    submitted = time.perf_counter()
    flushed = client.flush(timeout=300)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    stats = client.stats()
    client.close(timeout=5)
    return {
        "events": events,
        "sent": stats["sent"] - 1,
        "dropped": dict(stats["dropped"]),
        "flushed": flushed,
        "posts": stats["batches_sent"],
        "seconds": seconds,
        "submit_us": (submitted - started) / events * 1e6,
        "events_per_s": (stats["sent"] - 1) / seconds,
        "bytes_per_event": stats["bytes_sent"] / max(1, stats["sent"]),
        "app_cpu_us": cpu / events * 1e6,
        "build_us": build_s / len(sample) * 1e6,
        "encode_us": encode_s / len(sample) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the local metrics endpoint (bench/sink.py)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    results = {
        "default": measure(args.url, args.events),
        "compress": measure(args.url, args.events, compress=True),
    }
    for name in ("default",):  # uncompressed: each log carries both bodies
        if results[name]["bytes_per_event"] < 2 * len(BODY):
            raise SystemExit(
                f"{name}: {results[name]['bytes_per_event']:.0f} bytes posted per event, "
                f"fewer than its two {len(BODY)}-byte bodies: the logs lost their bodies"
            )
    if args.json:
        print(json.dumps(results))
    else:
        for name, row in results.items():
            print(name, json.dumps(row))


if __name__ == "__main__":
    main()
