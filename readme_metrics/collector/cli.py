"""``readme-metrics serve``: run the local collector and its dashboard;
``readme-metrics import [--db FILE] FILE...``: load JSON-lines files into its database
(:mod:`readme_metrics.collector.importer`).

::

    readme-metrics serve [--host 127.0.0.1] [--port 8787] [--db ./readme-metrics.sqlite3 | postgresql://...]
                         [--api-key KEY ...] [--max-age-days 30] [--max-rows 100000]
                         [--max-batch-mb 64] [--max-batch-values 1000000] [--max-batch-depth 64]
                         [--max-concurrent-ingests 4] [--prune-interval 60] [--public-url URL]
                         [--workers 1] [--token TOKEN] [--basic-auth USER:PASSWORD] [-v]

With no ``--api-key`` the collector accepts any non-empty API key (it is a local tool);
give one or more to accept only those. ``--db`` (default: ``$README_METRICS_DB``, else
``./readme-metrics.sqlite3``) is a SQLite file or a ``postgresql://`` URL (the ``postgres``
extra). ``--port 0`` picks a free port. The command writes
the dashboard URL and the ``README_METRICS_SERVER`` value to use on standard output, then
serves until Ctrl-C or SIGTERM (batches being stored are finished first). ``--workers N``
runs N uvicorn worker processes on the one socket (``/metrics`` counts them all, through
a temporary ``PROMETHEUS_MULTIPROC_DIR``). Off loopback, ``--token`` or ``--basic-auth``
(or ``README_METRICS_TOKEN`` / ``README_METRICS_BASIC_AUTH``) is required.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shutil
import socket
import sys
import tempfile
from typing import Any

from readme_metrics._version import __version__
from readme_metrics.collector.importer import import_files
from readme_metrics.collector.ingest import (
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_DEPTH,
    DEFAULT_MAX_BATCH_VALUES,
    DEFAULT_MAX_CONCURRENT_INGESTS,
)
from readme_metrics.collector.settings import DEFAULT_MAX_ROUTES, Settings, open_store
from readme_metrics.collector.storage import DEFAULT_DB, open_storage

DEFAULT_PORT = 8787
EXTRA_NEEDED = 'readme-metrics serve needs the collector extra: pip install "readme-metrics[collector]" ({})\n'
_DB_HELP = f"a SQLite file or a postgresql:// URL (default: $README_METRICS_DB, else ./{DEFAULT_DB})"


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer > 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="readme-metrics", description="readme_metrics command line (the SDK itself is a library)."
    )
    top.add_argument("--version", action="version", version=f"readme-metrics {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the local collector and dashboard",
        description="Run a local metrics endpoint (the hosted API's protocol) with a dashboard at /.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; IPv6 such as ::1 works too)"
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free port)"
    )
    serve.add_argument("--db", help=_DB_HELP)
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="an accepted API key (repeatable); without any, every non-empty key is accepted",
    )
    serve.add_argument(
        "--max-age-days",
        type=_non_negative_float,
        default=30.0,
        help="delete logs of exchanges older than this (default 30; 0 = keep forever)",
    )
    serve.add_argument(
        "--max-rows",
        type=_non_negative_int,
        default=100_000,
        help="keep at most this many logs, deleting the oldest (default 100000; 0 = no bound)",
    )
    serve.add_argument(
        "--max-batch-mb",
        type=_positive_float,
        default=DEFAULT_MAX_BATCH_BYTES / 1024 / 1024,
        help="largest accepted batch in MiB, after decompression (default 64; must be > 0)",
    )
    serve.add_argument(
        "--max-batch-values",
        type=_positive_int,
        default=DEFAULT_MAX_BATCH_VALUES,
        help=f"most JSON values (and object keys) in one batch (default {DEFAULT_MAX_BATCH_VALUES})",
    )
    serve.add_argument(
        "--max-batch-depth",
        type=_positive_int,
        default=DEFAULT_MAX_BATCH_DEPTH,
        help=f"deepest nesting of arrays and objects in one batch (default {DEFAULT_MAX_BATCH_DEPTH})",
    )
    serve.add_argument(
        "--max-concurrent-ingests",
        type=_positive_int,
        default=DEFAULT_MAX_CONCURRENT_INGESTS,
        help=f"batches received at once; more get 503 (default {DEFAULT_MAX_CONCURRENT_INGESTS})",
    )
    serve.add_argument(
        "--prune-interval",
        type=_non_negative_float,
        default=60.0,
        help="seconds between retention passes (default 60; 0 = after every batch)",
    )
    serve.add_argument("--public-url", help="the URL clients reach the collector at (for documentation links)")
    serve.add_argument(
        "--workers", type=_positive_int, default=1, help="uvicorn worker processes serving the port (default 1)"
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("README_METRICS_TOKEN") or None,
        help="bearer token for the dashboard, its API and /metrics (default $README_METRICS_TOKEN); "
        "needed off loopback unless --basic-auth",
    )
    serve.add_argument(
        "--basic-auth",
        metavar="USER:PASSWORD",
        default=os.environ.get("README_METRICS_BASIC_AUTH") or None,
        help="HTTP basic credentials for the same routes (default $README_METRICS_BASIC_AUTH)",
    )
    serve.add_argument(
        "--max-routes",
        type=_positive_int,
        default=DEFAULT_MAX_ROUTES,
        help=f"distinct routes labelled in /metrics, per process; more count as 'other' (default {DEFAULT_MAX_ROUTES})",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log every request")
    load = commands.add_parser(
        "import",
        help="load JSON-lines files (JsonLinesExporter's) into the collector's database",
        description="Store every log of JSON-lines files (one log object per line; - for stdin); "
        "logs already stored are skipped.",
    )
    load.add_argument("files", nargs="+", metavar="FILE")
    load.add_argument("--db", help=_DB_HELP)
    return top


def _db(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("README_METRICS_DB") or DEFAULT_DB)


def import_command(args: argparse.Namespace) -> int:
    """Exit status 0 when every line was a log, 1 when some were skipped or a file failed."""
    storage = open_storage(_db(args), max_age_days=None, max_rows=None)
    try:
        stored, known, bad = import_files(storage, args.files)
    except OSError as exc:
        sys.stderr.write(f"readme-metrics import: {exc}\n")
        return 1
    finally:
        storage.close()
    sys.stdout.write(f"imported {stored} logs into {storage.location} ({known} already there, {bad} lines skipped)\n")
    return 1 if bad else 0


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings(
        db=_db(args),
        host=args.host,
        api_keys=tuple(args.api_key),
        token=args.token,
        basic_auth=args.basic_auth,
        max_age_days=args.max_age_days,
        max_rows=args.max_rows,
        max_batch_mb=args.max_batch_mb,
        max_batch_values=args.max_batch_values,
        max_batch_depth=args.max_batch_depth,
        max_concurrent_ingests=args.max_concurrent_ingests,
        prune_interval=args.prune_interval,
        public_url=args.public_url,
        max_routes=args.max_routes,
    )


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        from readme_metrics.collector.access import check_bind
        from readme_metrics.collector.app import create_app
        from readme_metrics.collector.server import StoppingServer, bind, url_of, uvicorn_config
    except ImportError as exc:
        sys.stderr.write(EXTRA_NEEDED.format(exc))
        return 1
    try:
        settings = settings_of(args)
        check_bind(settings.host, settings.credentials)
    except ValueError as exc:
        sys.stderr.write(f"readme-metrics: {exc}\n")
        return 2
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        sys.stderr.write(f"readme-metrics: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 1
    url = url_of(sock)
    metrics_dir = None
    try:
        if args.workers == 1:
            try:
                app = create_app(settings)
            except Exception as exc:  # a server that refuses, a file that cannot be opened, no psycopg
                sys.stderr.write(f"readme-metrics: cannot open the database: {exc}\n")
                return 1
            storage = app.state.service.storage
            count, location = storage.count(), storage.location
            config = uvicorn_config(app, access_log=args.verbose)
        else:
            # The workers are new processes: they read the settings from the environment, and
            # count /metrics in files of one directory (prometheus_client's multiprocess mode).
            # An empty PROMETHEUS_MULTIPROC_DIR of the caller's is used (and left); else a new one.
            given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
            metrics_dir = None if given else tempfile.mkdtemp(prefix="readme-metrics-prometheus-")
            os.environ.update(settings.to_env(), PROMETHEUS_MULTIPROC_DIR=given or metrics_dir or "")
            try:
                storage = open_store(settings)  # creates the database before the workers race to
            except Exception as exc:
                sys.stderr.write(f"readme-metrics: cannot open the database: {exc}\n")
                return 1
            count, location = storage.count(), storage.location
            storage.close()
            config = uvicorn_config("readme_metrics.collector.app:app", workers=args.workers, access_log=args.verbose)
        _banner(settings, url, location, count, args.workers)
        if args.workers == 1:
            StoppingServer(config).run(sockets=[sock])
        else:
            _run_workers(config, sock)
    finally:
        sock.close()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.stdout.write("readme-metrics collector stopped\n")
    return 0


def _banner(settings: Settings, url: str, location: str, count: int, workers: int) -> None:
    keys = f"{len(settings.api_keys)} API key(s)" if settings.api_keys else "any API key (use --api-key to restrict)"
    access = "open on loopback" if not settings.credentials else "needs the token or basic credentials off loopback"
    sys.stdout.write(
        f"readme-metrics collector {__version__}\n"
        f"  storing logs in {location} ({count} logs so far)\n"
        f"  accepting {keys}\n"
        f"  dashboard and /metrics: {access}; {workers} worker process(es)\n"
        f"  point the SDK at it:  README_METRICS_SERVER={url}\n"
        f"  dashboard:  {url}/\n"
    )
    sys.stdout.flush()


def _run_workers(config: Any, sock: socket.socket) -> None:
    """uvicorn's process supervisor over our socket (its signature changed in uvicorn 0.30)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if "target" in inspect.signature(Multiprocess).parameters:
        server = uvicorn.Server(config)
        Multiprocess(config, target=server.run, sockets=[sock]).run()  # type: ignore[call-arg]
    else:
        Multiprocess(config, sockets=[sock]).run()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "import":
        return import_command(args)
    parser().print_help(sys.stderr)
    return 2
