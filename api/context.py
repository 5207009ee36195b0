"""Per-request database connection and the caller's identity."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, cast

from flask import current_app, g

from b2bua.storage import db


def conn() -> sqlite3.Connection:
    if "db" not in g:
        g.db = db.connect(Path(current_app.config["SOFTSWITCH_DB"]))
    return cast(sqlite3.Connection, g.db)


def close(_exc: BaseException | None = None) -> None:
    connection = g.pop("db", None)
    if connection is not None:
        connection.close()


def actor() -> str:
    token: Any = g.get("token")
    return f"token:{token.name}" if token is not None else "anonymous"


def control_path() -> Path:
    return Path(current_app.config["SOFTSWITCH_CONTROL"])
