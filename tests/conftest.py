"""Fixtures: a running softswitch per test (integration), per-test databases (unit), and
a throwaway PostgreSQL server with a fresh database per test (``tests/pgserver.py``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import Softswitch


@pytest.fixture
def softswitch(tmp_path: Path) -> Iterator[Softswitch]:
    switch = Softswitch(tmp_path).start()
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
