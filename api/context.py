"""The request's database connection and the caller's identity."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, current_app, g

from b2bua.storage import is_postgres, open_database
from b2bua.storage.backend import Database

if TYPE_CHECKING:
    from b2bua.storage.postgres import PostgresPool

_POOL = "softswitch.pool"  # app.extensions: the process's PostgreSQL connection pool
_POOL_LOCK = threading.Lock()
# The pool's size: the serving threads (gunicorn --threads, set by b2bua/runner.py).
THREADS_ENV = "SOFTSWITCH_API_THREADS"
DEFAULT_THREADS = 4


def init(app: Flask) -> None:
    app.teardown_appcontext(close)


def database() -> Database:
    """The request's database, opened at its first use.

    SQLite: a connection of the request's own, closed when the request ends. PostgreSQL:
    one of the process's pool, given back when the request ends (a new connection costs
    the server a process and the request a few milliseconds).
    """
    if "db" not in g:
        target = db_target()
        g.db = _pool(target).database() if is_postgres(target) else open_database(target)
    return cast(Database, g.db)


def _pool(target: str) -> PostgresPool:
    """The process's pool, made at the first request (after gunicorn's fork: a pool's
    connections and threads do not survive one)."""
    from b2bua.storage.postgres import PostgresPool  # the driver is an extra

    with _POOL_LOCK:
        pool: PostgresPool | None = current_app.extensions.get(_POOL)
        if pool is None:
            size = int(os.environ.get(THREADS_ENV) or DEFAULT_THREADS)
            pool = current_app.extensions[_POOL] = PostgresPool(target, size)
        return pool


def db_target() -> str:
    """The configured database: a SQLite file's path or a ``postgresql://`` URL."""
    return str(current_app.config["SOFTSWITCH_DB"])


def close(_exc: BaseException | None = None) -> None:
    connection = g.pop("db", None)
    if connection is not None:
        connection.close()  # PostgreSQL: back to the pool


def actor() -> str:
    token: Any = g.get("token")
    if token is not None:
        return f"token:{token.name}"
    operator: Any = g.get("operator")  # a console session (api/auth.py)
    return f"operator:{operator.name}" if operator is not None else "anonymous"


def role() -> str | None:
    """The caller's role, ``admin`` or ``read``: its token's or its operator's."""
    caller: Any = g.get("token") or g.get("operator")
    return None if caller is None else str(caller.role)


def control_path() -> Path:
    return Path(current_app.config["SOFTSWITCH_CONTROL"])
