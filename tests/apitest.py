"""The API under Flask's test client: a migrated database, two tokens, problem checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from api.app import create_app
from b2bua.storage import migrate, open_database, tokens


@dataclass(frozen=True)
class ApiSetup:
    client: FlaskClient
    admin: str  # an admin token
    reader: str  # a read-only token
    path: Path  # the database
    control: Path  # an engine control socket nobody listens on


def make_api(tmp_path: Path) -> ApiSetup:
    path = tmp_path / "s.db"
    with open_database(path) as database:
        migrate.migrate(database)
        admin = tokens.create_token(database, "ops", "admin")
        reader = tokens.create_token(database, "billing", "read")
    control = tmp_path / "no-engine.sock"
    return ApiSetup(create_app(path, control).test_client(), admin, reader, path, control)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = resp.get_json(force=True)
    assert body["status"] == status and body["title"] and body["detail"]
    return body
