"""The embedded backend: one SQLite file in WAL mode (``--db var/softswitch.db``)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from b2bua.storage import db
from b2bua.storage.backend import (
    BusyError,
    ConflictError,
    Database,
    HeldLock,
    Params,
    Row,
    StorageError,
)
from b2bua.storage.coalesce import coalesce


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {d[0]: v for d, v in zip(cursor.description, values, strict=True)}


def translate(exc: sqlite3.Error) -> StorageError:
    """SQLite's error as one of the backend interface's."""
    if isinstance(exc, sqlite3.IntegrityError):
        return ConflictError(str(exc))
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return BusyError(str(exc))
    return StorageError(str(exc))


class _FileLock(HeldLock):
    """An flock on a file beside the database: the kernel drops it with the process."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def held(self) -> bool:
        return not self._handle.closed

    def release(self) -> None:
        self._handle.close()  # closing the descriptor drops the lock


class SqliteDatabase(Database):
    kind = "sqlite"

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        super().__init__(f"sqlite:///{self.path}")
        self.connection = db.connect(self.path, readonly=readonly)
        self.connection.row_factory = _dict_row

    def execute(self, sql: str, params: Params = ()) -> int:
        try:
            return self.connection.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def execute_many(self, sql: str, params: Iterable[Params]) -> None:
        try:
            self.connection.executemany(sql, params)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def commit_batch(self, statements: Iterable[tuple[str, Params]], order: str) -> None:
        # The writer's batch as a few multi-row statements: SQLite releases the
        # interpreter lock around each statement, and a busy event loop hands it back
        # late (storage/coalesce.py).
        super().commit_batch(coalesce(list(statements)), order)

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return self.connection.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with db.transaction(self.connection):
                yield
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        # A deferred transaction: its first read fixes a WAL snapshot, which neither
        # blocks writers nor sees their later commits.
        self.execute("BEGIN")
        try:
            yield
        finally:
            self.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self.connection.in_transaction

    def order_commits(self, name: str) -> None:
        # BEGIN IMMEDIATE already takes the file's one write lock: writers are serial.
        return

    def change_marker(self) -> int:
        # Moves when another connection commits to the file (this one's commits do not).
        return int(self.connection.execute("PRAGMA data_version").fetchone()["data_version"])

    @contextmanager
    def advisory_lock(self, name: str) -> Iterator[None]:
        if str(self.path) == ":memory:":  # private to this connection: nobody to exclude
            yield
            return
        # One file serves one host: an flock on a file beside it is seen by every process.
        lock_path = self.path.with_name(f"{self.path.name}.lock-{name}")
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def try_hold(self, name: str) -> HeldLock | None:
        if str(self.path) == ":memory:":  # private to this connection: nobody to exclude
            return _FileLock(open(os.devnull))
        lock_path = self.path.with_name(f"{self.path.name}.lock-{name}")
        handle = open(lock_path, "a")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return _FileLock(handle)

    def close(self) -> None:
        self.connection.close()

    def _tables(self) -> Iterator[str]:
        for row in self.rows("SELECT name FROM sqlite_master WHERE type = 'table' "
                             "AND name NOT LIKE 'sqlite_%'"):
            yield str(row["name"])
