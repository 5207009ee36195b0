"""A :class:`Database` over a ``sqlite3`` connection its caller opened and will close.

Some callers still hold a raw connection (the CLI, the runner's admin token, the
engine's config watcher): the storage functions they call (tokens, parameters, audit)
accept it and work on it through this view, so those callers can move to
:func:`~b2bua.storage.open_database` one at a time. Statements and transactions only:
the view knows no file, so it has no advisory lock.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from b2bua.storage.backend import Database, Params, Row
from b2bua.storage.sqlite import SqliteDatabase, translate

Connection = Database | sqlite3.Connection


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {d[0]: v for d, v in zip(cursor.description, values, strict=True)}


class BorrowedDatabase(SqliteDatabase):
    """The owner's connection, its row factory untouched; :meth:`close` leaves it open."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        Database.__init__(self, "sqlite://borrowed")
        self.connection = connection

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        cursor = self.connection.cursor()
        cursor.row_factory = _dict_row
        try:
            return cursor.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def close(self) -> None:
        pass  # the owner closes it


def as_database(conn: Connection) -> Database:
    """``conn`` itself when it is a Database, else a view of the raw connection."""
    return conn if isinstance(conn, Database) else BorrowedDatabase(conn)
