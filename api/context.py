"""Per-request database connection and the caller's identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from flask import current_app, g

from b2bua.storage import open_database
from b2bua.storage.backend import Database


def database() -> Database:
    """The request's database, opened at first use and closed when the request ends."""
    if "db" not in g:
        g.db = open_database(db_target())
    return cast(Database, g.db)


def db_target() -> str:
    """The configured database: a SQLite file's path or a ``postgresql://`` URL."""
    return str(current_app.config["SOFTSWITCH_DB"])


def close(_exc: BaseException | None = None) -> None:
    connection = g.pop("db", None)
    if connection is not None:
        connection.close()


def actor() -> str:
    token: Any = g.get("token")
    return f"token:{token.name}" if token is not None else "anonymous"


def control_path() -> Path:
    return Path(current_app.config["SOFTSWITCH_CONTROL"])
