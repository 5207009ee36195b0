"""Fixtures: a running softswitch per test (integration), per-test databases (unit), and
a throwaway PostgreSQL server with a fresh database per test (``tests/pgserver.py``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from redisserver import RedisServer
from support import Softswitch

if TYPE_CHECKING:
    import pgserver

# The storage backends a test marked ``both_backends`` runs on, each its own case.
BACKENDS = ("sqlite", "postgresql")
# The backend of every other test that takes backend_db (the softswitch fixture's):
# SOFTSWITCH_TEST_BACKEND=postgresql runs them on PostgreSQL instead.
DEFAULT_BACKEND = os.environ.get("SOFTSWITCH_TEST_BACKEND", "sqlite")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_backends: run the test once on SQLite and once on PostgreSQL "
                   "(through the backend_db fixture: the softswitch fixture, make_api)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if ("backend_db" in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("both_backends") is not None):
        metafunc.parametrize("backend_db", BACKENDS, indirect=True)


@pytest.fixture
def backend_db(request: pytest.FixtureRequest) -> str | None:
    """The database of the test's softswitch or API: None for a SQLite file in the test's
    folder, or the URL of a new empty PostgreSQL database (a ``both_backends`` test's
    postgresql case, or any test under SOFTSWITCH_TEST_BACKEND=postgresql)."""
    backend = getattr(request, "param", DEFAULT_BACKEND)
    if backend not in BACKENDS:
        raise ValueError(f"SOFTSWITCH_TEST_BACKEND: one of {', '.join(BACKENDS)}")
    if backend == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db_target(tmp_path: Path, backend_db: str | None) -> str:
    """Where a test's database is: ``backend_db``'s URL, else ``s.db`` in its folder (not
    created yet, nor migrated)."""
    return backend_db if backend_db is not None else str(tmp_path / "s.db")


@pytest.fixture
def softswitch(tmp_path: Path, backend_db: str | None) -> Iterator[Softswitch]:
    switch = Softswitch(tmp_path, db=backend_db).start()
    try:
        yield switch
    finally:
        code = switch.stop()
        assert code == 0, f"softswitch exit code {code}\n{switch.log()[-3000:]}"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A PostgreSQL server for the session: ``SOFTSWITCH_TEST_DB_URL`` when set, else one
    started for the tests (an error, never a skip, when it cannot start)."""
    import pgserver

    external = pgserver.external_url()
    if external is not None:
        yield external
        return
    server = pgserver.PgServer().start()
    try:
        yield server.admin_url
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """The URL of a new, empty database of its own for one test."""
    import pgserver

    url = pgserver.create_database(pg_admin_url)
    try:
        yield url
    finally:
        pgserver.drop_database(pg_admin_url, url)


@pytest.fixture
def private_pg() -> Iterator[pgserver.PgServer]:
    """A PostgreSQL server of one test's own, which it may stop, start or freeze."""
    import pgserver

    server = pgserver.PgServer().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own on loopback, stopped after it."""
    started = RedisServer(tmp_path / "redis").start()
    try:
        yield started
    finally:
        started.stop()
