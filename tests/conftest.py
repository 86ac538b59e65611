"""Shared test setup."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from readme_metrics import _log
from tests.pg_rig import PostgresServer


@pytest.fixture(autouse=True)
def fresh_warning_limits() -> Iterator[None]:
    """Each test sees the SDK's rate-limited warnings afresh."""
    with _log._lock:
        _log._last.clear()
    yield


#: The collector's storage engines; the storage and API tests run on each.
ENGINES = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (tests/pg_rig.py)."""
    try:
        server = PostgresServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="module", params=ENGINES)
def new_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    """Fresh, empty databases of one engine: ``new_db(name)`` is a SQLite file's path or a
    ``postgresql://`` URL (a database of its own on the session's server)."""
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return lambda name: server.new_database(name)
    root = tmp_path_factory.mktemp("db")
    return lambda name: str(root / f"{name}-{uuid.uuid4().hex[:8]}.sqlite3")
