"""The SQLite connection under a :class:`Database`, for the storage functions that still
take one (``migrate``, ``params_store``, ``tokens``, ``audit``); they run on SQLite only."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from b2bua.storage.backend import Database, StorageError
from b2bua.storage.sqlite import SqliteDatabase, translate


@contextmanager
def sqlite_connection(database: Database) -> Iterator[sqlite3.Connection]:
    """``database``'s connection as ``db.connect`` opens it (rows as ``sqlite3.Row``,
    which sqlite-utils needs), its errors as the backend interface's."""
    if not isinstance(database, SqliteDatabase):
        raise StorageError(f"this needs the SQLite backend, not {database.kind}")
    conn = database.connection
    row_factory = conn.row_factory
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    finally:
        conn.row_factory = row_factory
