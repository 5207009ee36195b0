"""The request's database connection and the caller's identity."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

from flask import Flask, current_app, g

from b2bua.storage import is_postgres, open_database
from b2bua.storage.backend import Database

_KEPT = "softswitch.databases"  # app.extensions: the threads' kept PostgreSQL connections


def init(app: Flask) -> None:
    app.extensions[_KEPT] = threading.local()
    app.teardown_appcontext(close)


def database() -> Database:
    """The request's database, opened at its first use.

    SQLite: a connection of the request's own, closed when the request ends. PostgreSQL:
    the serving thread's own, kept for its next requests (a new connection costs the
    server a process and the request a few milliseconds); it is opened again when the
    server ended it meanwhile.
    """
    if "db" not in g:
        target = db_target()
        g.db = _kept(target) if is_postgres(target) else open_database(target)
    return cast(Database, g.db)


def _kept(target: str) -> Database:
    kept = current_app.extensions[_KEPT]
    found: Database | None = getattr(kept, "database", None)
    if found is None:
        found = kept.database = open_database(target)
    return found


def db_target() -> str:
    """The configured database: a SQLite file's path or a ``postgresql://`` URL."""
    return str(current_app.config["SOFTSWITCH_DB"])


def close(_exc: BaseException | None = None) -> None:
    connection = g.pop("db", None)
    if connection is not None and connection.kind != "postgresql":
        connection.close()


def actor() -> str:
    token: Any = g.get("token")
    return f"token:{token.name}" if token is not None else "anonymous"


def control_path() -> Path:
    return Path(current_app.config["SOFTSWITCH_CONTROL"])
