"""What the benchmark apps share: which SDK wraps them, and its settings.

``BENCH_SDK`` picks the variant: ``none`` (the bare app), ``ours`` (this repository's
``readme_metrics``; ``BENCH_CONFIG``, a JSON object, adds options to its configuration),
``readme340`` (the existing ``readme-metrics`` 3.4.0, from its own virtual environment)
or ``moesif`` (``moesifwsgi`` / ``moesifasgi``). ``BENCH_SINK`` is the
local metrics endpoint every SDK delivers to (``bench/sink.py``). Each SDK sends with its
own key, so the sink can tell who delivered what.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

SDK = os.environ.get("BENCH_SDK", "none")
SINK = os.environ.get("BENCH_SINK", "http://127.0.0.1:9")
KEYS = {"ours": "bench-ours", "readme340": "bench-readme340", "moesif": "bench-moesif"}
if os.environ.get("BENCH_KEY"):  # bench/run.py gives each variant its own key
    KEYS[SDK] = os.environ["BENCH_KEY"]
DOCS = "https://docs.example.test"
#: Keys every SDK that has a denylist redacts (the cost of redaction is part of the price).
DENYLIST = ["password", "x-secret"]
#: Bytes of GET /big (a streamed response for the peak-RSS measure), in 64 KiB chunks.
BIG_BYTES = int(os.environ.get("BENCH_BIG_BYTES", str(100 * 1024 * 1024)))
CHUNK = b"x" * 65536
#: ``max_body_bytes`` of the audit case's route (POST /audit, a 1 MB JSON body echoed back).
AUDIT_MAX_BODY = 16 * 1024 * 1024
#: GET /stream: five chunks, 200 ms apart (time to first byte).
STREAM_CHUNKS = 5
STREAM_PAUSE = 0.2


#: What ``GET /call`` calls (the sink answers any GET with ``{}``, counting nothing).
CALLED = f"{SINK}/called"
_clients: dict[bool, Any] = {}


def outgoing_client(asynchronous: bool = False) -> Any:
    """One keep-alive ``httpx`` client per process (imported here: the peers' environments
    have no httpx, and only this repository's SDK runs the ``call`` case)."""
    client = _clients.get(asynchronous)
    if client is None:
        import httpx

        client = _clients[asynchronous] = httpx.AsyncClient() if asynchronous else httpx.Client()
    return client


def group(request: Any) -> dict[str, str]:
    """The grouping function (same for every SDK): who called, from a header."""
    return {
        "api_key": request.headers.get("X-Api-Key") or "caller-key-0001",
        "label": "Bench Caller",
        "email": "caller@example.test",
    }


def big_chunks() -> Iterator[bytes]:
    full, rest = divmod(BIG_BYTES, len(CHUNK))
    for _ in range(full):
        yield CHUNK
    if rest:
        yield CHUNK[:rest]


def our_config() -> Any:
    """This repository's SDK with its defaults and a denylist, delivering to the sink."""
    from readme_metrics import MetricsApiConfig

    extra: dict[str, Any] = {"denylist": DENYLIST}
    for name, env, kind in (
        ("buffer_length", "BENCH_BUFFER_LENGTH", int),
        ("flush_interval", "BENCH_FLUSH_INTERVAL", float),
        ("max_batch_events", "BENCH_MAX_BATCH", int),
        ("max_body_bytes", "BENCH_MAX_BODY", int),
    ):
        if os.environ.get(env):
            extra[name] = kind(os.environ[env])
    try:  # the audit case's route keeps whole bodies; GET /quiet is never logged (docs/routes.md)
        from readme_metrics import Route

        extra["routes"] = {"/audit": Route(max_body_bytes=AUDIT_MAX_BODY), "/quiet": Route(log=False)}
    except ImportError:  # --sdk-path / --compare: a copy from before route policies
        pass
    extra.update(json.loads(os.environ.get("BENCH_CONFIG") or "{}"))  # bench/run.py --config NAME=JSON
    destinations = extra.pop("exporters_env", None)  # bench/run.py --destinations
    if destinations:
        token = base64.b64encode(f"{KEYS['ours']}:".encode()).decode()
        os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Basic%20{token}"  # the sink counts by key
        os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/json"
        os.environ["README_METRICS_EXPORTERS"] = destinations.format(sink=SINK, pid=os.getpid())
    return MetricsApiConfig(KEYS["ours"], group, base_log_url=DOCS, metrics_server=SINK, **extra)


def readme340_config() -> Any:
    """The existing readme-metrics 3.4.0 (it reads README_METRICS_SERVER itself)."""
    from readme_metrics import MetricsApiConfig

    return MetricsApiConfig(KEYS["readme340"], group, base_log_url=DOCS, denylist=DENYLIST)


def moesif_settings() -> dict[str, Any]:
    return {"APPLICATION_ID": KEYS["moesif"], "BASE_URI": SINK, "LOG_BODY": True}


def announce() -> None:
    """Say on stderr which SDK this process runs (the benchmark logs it)."""
    where = ""
    if SDK in ("ours", "readme340"):
        import readme_metrics

        where = f" from {os.path.dirname(readme_metrics.__file__)}"
    print(f"bench app: sdk={SDK}{where}", file=sys.stderr, flush=True)
