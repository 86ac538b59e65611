"""``python3 dev.py demo`` (examples/demo.py) as a user runs it: a real subprocess, once
without a terminal, once in a (pseudo-)terminal stopped with SIGTERM."""

from __future__ import annotations

import os
import pty
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = [sys.executable, "-u", "examples/demo.py", "--port", "0"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"CI", "README_METRICS_SERVER"}}


def test_without_a_terminal_it_says_the_dashboard_stops_and_cleans_up() -> None:
    done = subprocess.run(
        DEMO, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"Dashboard: http://127\.0\.0\.1:\d+/ stopped: the demo exits now", out), out
    logs = re.search(r"Logs: (\S+), a temporary database, removed now", out)
    assert logs is not None, out
    assert not Path(logs[1]).parent.exists()


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals and ptys")
def test_sigterm_stops_it_and_removes_its_temporary_directory() -> None:
    controller, terminal = pty.openpty()  # stdin is a terminal: the demo waits for Ctrl-C
    process = subprocess.Popen(
        DEMO, cwd=ROOT, env=_env(), stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    os.close(terminal)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True).start()
    seen: list[str] = []
    database: Path | None = None
    try:
        deadline = time.monotonic() + 120
        while not any("Press Ctrl-C to stop" in line for line in seen):
            assert time.monotonic() < deadline and process.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            found = re.search(r"\(database: (.+)\)\s*$", seen[-1])
            if found:
                database = Path(found[1])
        assert database is not None and database.parent.is_dir(), "".join(seen)
        assert database.parent.name.startswith("readme-metrics-demo-")

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM, "".join(seen)
        assert not database.parent.exists(), "the temporary directory was left behind"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
        if database is not None:
            shutil.rmtree(database.parent, ignore_errors=True)
