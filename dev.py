#!/usr/bin/env python3
"""Developer entry point. Needs nothing but python3; it builds ``.venv`` itself.

    python3 dev.py demo     # the main job: demo app + SDK + local metrics endpoint
    python3 dev.py test     # ruff, mypy and the whole test suite (what CI runs)
    python3 dev.py lint     # ruff and mypy only
    python3 dev.py bench    # the benchmark (see docs/benchmarks.md)
    python3 dev.py bench-ingest  # the collector's ingest rate and dashboard latency (bench/ingest.py)

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
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".installed"


def run(*cmd: str | Path, **kw: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)  # type: ignore[call-overload]


def ensure_env() -> None:
    """Create .venv and install the package with its test extras when pyproject changes."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this script may run on an older python3
        sys.exit(f"python3 >= 3.10 is needed (this is {sys.version.split()[0]})")
    if not PY.exists() or subprocess.run([PY, "-m", "pip", "--version"], capture_output=True).returncode:
        # New, or left half-made by an earlier failure: build it afresh.
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except (subprocess.CalledProcessError, OSError) as exc:
            shutil.rmtree(VENV, ignore_errors=True)
            sys.exit(f"cannot create .venv with pip ({exc}); on Debian/Ubuntu: apt-get install python3-venv")
        STAMP.unlink(missing_ok=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", ".[test]")
    STAMP.write_text(wanted)


def have_command(cmd: str) -> bool:
    """On PATH, or (PostgreSQL's server programs) in Debian's /usr/lib/postgresql/<version>/bin."""
    return shutil.which(cmd) is not None or bool(list(Path("/usr/lib/postgresql").glob(f"*/bin/{cmd}")))


def ensure_system_packages(commands: dict[str, list[str]]) -> None:
    """Install missing Debian packages (``{command: [packages]}``) with apt-get when root.

    The dashboard test drives a real headless Chromium; the collector's storage tests run a
    real PostgreSQL server (initdb, pg_ctl), its Prometheus test a real Prometheus server;
    the benchmark needs wrk. On a
    machine where they cannot be installed, the tests that need them fail and say why.
    """
    missing = sorted({pkg for cmd, pkgs in commands.items() if not have_command(cmd) for pkg in pkgs})
    if not missing:
        return
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(f"note: please install {' '.join(missing)} (Debian packages) for the tests that need them", flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)
    except subprocess.CalledProcessError:
        print(f"note: could not install {' '.join(missing)}; the tests that need them will fail", flush=True)


def lint() -> None:
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "lint", "bench", "bench-ingest"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    try:
        ensure_env()
        if command == "lint":
            lint()
        elif command == "test":
            ensure_system_packages(
                {
                    "chromium": ["chromium"],
                    "chromedriver": ["chromium-driver"],
                    "prometheus": ["prometheus"],
                    "initdb": ["postgresql"],
                }
            )
            lint()
            run(PY, "-m", "pytest", *rest)
        elif command == "demo":
            # Replace this process: Ctrl-C then reaches the demo alone, which cleans up.
            os.chdir(ROOT)
            os.execv(PY, [str(PY), "examples/demo.py", *rest])
        elif command == "bench":
            ensure_system_packages({"wrk": ["wrk"]})
            run(PY, "bench/run.py", *rest)
        elif command == "bench-ingest":
            ensure_system_packages({"initdb": ["postgresql"]})
            run(PY, "bench/ingest.py", *rest)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
