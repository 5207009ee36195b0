"""The API under Flask's test client: a migrated database, two tokens, problem checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from api.app import create_app
from b2bua.storage import migrate, open_database, tokens
from b2bua.storage.backend import Database


@dataclass(frozen=True)
class ApiSetup:
    client: FlaskClient
    admin: str  # an admin token
    reader: str  # a read-only token
    target: str  # the database: a SQLite file or a postgresql:// URL
    control: Path  # an engine control socket nobody listens on

    def database(self) -> Database:
        """A connection of the test's own to the API's database (close it)."""
        return open_database(self.target)


def make_api(tmp_path: Path, db: str | None = None) -> ApiSetup:
    """The API on ``db`` (a ``postgresql://`` URL of an empty database), else on a new
    SQLite file in ``tmp_path``; migrated, with an admin and a read token."""
    target = db if db is not None else str(tmp_path / "s.db")
    with open_database(target) as database:
        migrate.migrate(database)
        admin = tokens.create_token(database, "ops", "admin")
        reader = tokens.create_token(database, "billing", "read")
    control = tmp_path / "no-engine.sock"
    return ApiSetup(create_app(target, control).test_client(), admin, reader, target,
                    control)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = resp.get_json(force=True)
    assert body["status"] == status and body["title"] and body["detail"]
    return body
