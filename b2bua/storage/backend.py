"""The one small interface every part of the softswitch reaches its database through.

Two backends implement it: SQLite (``b2bua/storage/sqlite.py``, the embedded default) and
PostgreSQL. Statements are written once, in the SQL both accept, with ``?``
placeholders; a backend adapts the placeholders, maps its errors onto the three below,
and hands rows back as plain dicts. Only modules of ``b2bua/storage/`` hold SQL: the
rest of the softswitch calls their functions and gets objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

Row = dict[str, Any]
Params = Sequence[Any]


class StorageError(Exception):
    """Anything the database refused that is not one of the cases below."""


class BusyError(StorageError):
    """The database is there but could not take the statement now (locked by another
    writer, a serialization failure): the same statement may succeed if retried."""


class ConflictError(StorageError):
    """The statement breaks a constraint (a unique name, a foreign key): retrying it
    gives the same answer; the caller reports it (409, 422)."""


class UnavailableError(StorageError):
    """The database cannot be reached (the server stopped, the network cut): writes wait
    and are retried; the API answers 503."""


class HeldLock(ABC):
    """A lock taken by :meth:`Database.try_hold`."""

    @abstractmethod
    def held(self) -> bool:
        """Still ours: False once the session that held it is gone (the server
        restarted); the holder must take it again."""

    @abstractmethod
    def release(self) -> None: ...


class Database(ABC):
    """One connection (or a connection pool) to the softswitch's database.

    A ``Database`` is used by one thread at a time, except where a backend says more.
    Outside :meth:`transaction`, every statement commits on its own.
    """

    kind: ClassVar[str]  # "sqlite" or "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url

    # -- statements ------------------------------------------------------------------------

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    def execute_many(self, sql: str, params: Iterable[Params]) -> None:
        """Run one statement once per parameter set."""

    def commit_batch(self, statements: Iterable[tuple[str, Params]], order: str) -> None:
        """Run different statements in order in one write transaction of their own (the
        writer's batch), under :meth:`order_commits` ``(order)``: all of them commit, or
        none. A server backend sends the whole transaction at once."""
        with self.transaction():
            self.order_commits(order)
            for sql, params in statements:
                self.execute(sql, params)

    @abstractmethod
    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query, as dicts keyed by column name."""

    def row(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None."""
        found = self.rows(sql, params)
        return found[0] if found else None

    def value(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        found = self.row(sql, params)
        return None if found is None else next(iter(found.values()))

    def insert(self, sql: str, params: Params = ()) -> int:
        """Run an ``INSERT ... RETURNING id``; the new row's id."""
        found = self.row(sql, params)
        if found is None:
            raise StorageError("INSERT returned no row (is RETURNING id missing?)")
        return int(found["id"])

    # -- transactions ----------------------------------------------------------------------

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction: committed when the block ends, rolled back when it raises.
        Taken at once for writing (no lock upgrade midway); a block inside an open one
        joins it."""

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[None]:
        """A read-only transaction: every read in the block sees the database as of its
        first read, while others go on writing (a copy, a consistent export). Takes no
        write lock."""

    @property
    @abstractmethod
    def in_transaction(self) -> bool: ...

    @abstractmethod
    def order_commits(self, name: str) -> None:
        """Inside a transaction: the transactions that call this with the same ``name``
        run one at a time, from the call to their commit. So ids drawn after the call
        are committed in increasing order, and a reader paging by id (``id > after``)
        never passes an id that commits later (the CDR cursor)."""

    # -- across processes ------------------------------------------------------------------

    @abstractmethod
    def change_marker(self) -> int:
        """A number that moves when another connection may have committed a change: the
        config watcher reads the change counters only then. Cheap enough to ask every
        few hundred milliseconds."""

    @abstractmethod
    def advisory_lock(self, name: str) -> AbstractContextManager[None]:
        """Hold a lock named ``name`` across every process and node that shares this
        database, for a job only one may run at a time (migrating, a cleanup); blocks
        until it is free."""

    @abstractmethod
    def try_hold(self, name: str) -> HeldLock | None:
        """Take the lock named ``name`` if nobody holds it, without waiting, and keep it
        until :meth:`HeldLock.release`, or until this process dies: the backend then
        frees it by itself (PostgreSQL ends the session, the kernel drops the file
        lock). None when another holds it. A node holds its own name's lock while it
        lives (docs/cluster.md)."""

    def lock_free(self, name: str) -> bool:
        """Whether nobody holds the lock named ``name`` now (taken and let go at once: a
        look, not a hold)."""
        lock = self.try_hold(name)
        if lock is None:
            return False
        lock.release()
        return True

    # -- life ------------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def tables(self) -> list[str]:
        """The softswitch's table names, sorted (schema checks, the copy tool)."""
        return sorted(self._tables())

    @abstractmethod
    def _tables(self) -> Iterator[str]: ...
