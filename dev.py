#!/usr/bin/env python3
"""Developer entry point. Needs nothing but python3; it builds ``.venv`` itself.

    python3 dev.py demo     # the main job: demo app + SDK + local metrics endpoint
    python3 dev.py test     # ruff, mypy and the whole test suite (what CI runs)
    python3 dev.py lint     # ruff and mypy only
    python3 dev.py bench    # the benchmark (see bench/README.md)

Extra arguments after ``test`` go to pytest (``python3 dev.py test -k wsgi -x``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".installed"


def run(*cmd: str | Path, **kw: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)  # type: ignore[call-overload]


def ensure_env() -> None:
    """Create .venv and install the package with its test extras when pyproject changes."""
    if not PY.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", ".[test]")
    STAMP.write_text(wanted)


def ensure_system_packages(commands: dict[str, list[str]]) -> None:
    """Install missing Debian packages (``{command: [packages]}``) with apt-get when root.

    The dashboard test drives a real headless Chromium; the benchmark needs wrk. On a
    machine where they cannot be installed, the tests that need them fail and say why.
    """
    missing = sorted({pkg for cmd, pkgs in commands.items() if shutil.which(cmd) is None for pkg in pkgs})
    if not missing:
        return
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(f"note: please install {' '.join(missing)} (Debian packages) for the tests that need them", flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=env)
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)


def lint() -> None:
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "lint", "bench"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_env()
    try:
        if command == "lint":
            lint()
        elif command == "test":
            ensure_system_packages({"chromium": ["chromium"], "chromedriver": ["chromium-driver"]})
            lint()
            run(PY, "-m", "pytest", *rest)
        elif command == "demo":
            run(PY, "examples/demo.py", *rest)
        elif command == "bench":
            ensure_system_packages({"wrk": ["wrk"]})
            run(PY, "bench/run.py", *rest)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
