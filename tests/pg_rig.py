"""A real PostgreSQL server for the tests (and the benchmark), in a temporary directory.

Debian's ``postgresql`` package provides the binaries (``/usr/lib/postgresql/<v>/bin``;
``python3 dev.py test`` installs it when it runs as root). No system service is used:
``initdb`` makes a cluster in a fresh directory and ``pg_ctl`` runs it on a free port of
127.0.0.1 with trust authentication, until :meth:`PostgresServer.stop` removes it all.
PostgreSQL refuses to run as root: as root, the cluster belongs to user ``nobody`` and
its programs run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

INSTALL_HINT = "install Debian's postgresql package (apt-get install postgresql), or run `python3 dev.py test` as root"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding ``initdb`` (else ``initdb`` on PATH)."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """``initdb`` + ``pg_ctl start`` in a temporary directory; :attr:`url` is the superuser's."""

    def __init__(self, *, fast: bool = True, settings: dict[str, str] | None = None) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(f"no PostgreSQL server binaries (initdb): {INSTALL_HINT}")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="readme-metrics-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL will not run as root: the cluster belongs to nobody.
            shutil.chown(self.root, "nobody")
            self._as = ["runuser", "-u", "nobody", "--"]
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": "200",
            # Throwaway data: no need to survive a power cut.
            **({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"} if fast else {}),
            **(settings or {}),
        }
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = '{value}'\n" for key, value in options.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [*self._as, str(self.bindir / program), *args], capture_output=True, text=True, cwd=self.root
        )
        if result.returncode:
            log = self.root / "server.log"
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stdout}{result.stderr}"
                + (log.read_text(errors="replace") if log.exists() else "")
            )

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
