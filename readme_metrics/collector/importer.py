"""``readme-metrics import FILE...``: load JSON-lines files (``JsonLinesExporter``'s) into
the collector's database.

Each line is one log object of the wire protocol, validated as ``POST /v1/request``
validates it; a line that is not one is reported (file and line number) and skipped.
Logs already stored (same ``_id``) are skipped, so a file imported twice, or rotated
files that overlap, store each log once. ``-`` reads standard input. Retention
(``--max-age-days``, ``--max-rows``) is applied by ``serve``, not here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import IO

from readme_metrics.collector.ingest import parse_json
from readme_metrics.collector.storage import InvalidLogError, Record, Storage, record_of

#: Logs stored per transaction.
IMPORT_BATCH = 500


def records_of(lines: Iterable[bytes], name: str, errors: IO[str]) -> Iterator[Record | None]:
    """The record of each non-blank line; ``None`` (reported on ``errors``) for a bad one."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield record_of(parse_json(line))
        except (ValueError, InvalidLogError) as exc:
            errors.write(f"readme-metrics import: {name}:{number}: skipped: {str(exc)[:200]}\n")
            yield None


def import_files(storage: Storage, paths: Iterable[str], errors: IO[str] = sys.stderr) -> tuple[int, int, int]:
    """Import ``paths`` into ``storage``: (logs stored, logs already there, bad lines)."""
    stored = known = bad = 0
    batch: list[Record] = []

    def flush() -> None:
        nonlocal stored, known
        new = storage.insert(batch)
        stored, known = stored + new, known + len(batch) - new
        batch.clear()

    for path in paths:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below
        try:
            for record in records_of(stream, "<stdin>" if path == "-" else path, errors):
                if record is None:
                    bad += 1
                    continue
                batch.append(record)
                if len(batch) >= IMPORT_BATCH:
                    flush()
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
    flush()
    return stored, known, bad
