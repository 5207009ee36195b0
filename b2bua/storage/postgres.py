"""The server backend: PostgreSQL 15 through psycopg 3 (``--db postgresql://...``).

One connection per ``Database`` for statements and transactions, opened again after the
server went away; a second one, opened on first use of :meth:`change_marker`, LISTENs
for the config triggers' notifications; one more per :meth:`advisory_lock` held.

Where PostgreSQL behaves otherwise than SQLite, the backend makes it behave the same:
a transaction takes the database's one write lock when it begins (SQLite's ``BEGIN
IMMEDIATE``), a lock is waited for 5 s at most, then the statement is busy (SQLite's busy
timeout), and text holding the NUL character, which PostgreSQL cannot store, is stored
with U+FFFD in its place instead of failing the whole transaction.
"""

from __future__ import annotations

import hashlib
import re
import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache

import psycopg
from psycopg import errors
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import ConnStatus
from psycopg.rows import dict_row
from psycopg.types.string import StrDumperUnknown

from b2bua.storage.backend import (
    BusyError,
    ConflictError,
    Database,
    HeldLock,
    Params,
    Row,
    StorageError,
    UnavailableError,
)

Connection = psycopg.Connection[Row]

NOTIFY_CHANNEL = "softswitch_config"  # the config triggers' pg_notify channel
# change_marker() moves at least this often on its own: a notification sent while the
# listening connection was down is caught by the next slow tick.
SLOW_POLL = 5.0
LISTEN_RETRY = 1.0  # seconds between attempts to open the listening connection again

# Applied unless the URL says otherwise: a server that does not answer fails a connect
# in seconds, and a cut network shows as a dead connection instead of a hung statement;
# a lock held elsewhere is waited for as long as SQLite's busy timeout, then the
# statement is busy (BusyError: the writer retries, the API answers 503).
CONNECT_DEFAULTS = {"connect_timeout": "5", "keepalives_idle": "30",
                    "keepalives_interval": "10", "keepalives_count": "3",
                    "options": "-c lock_timeout=5000"}

BUSY = (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable,
        errors.QueryCanceled)

# A quoted string or identifier, a comment, or one character to rewrite.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|[?%]", re.DOTALL)


def translate(exc: psycopg.Error) -> StorageError:
    """psycopg's error as one of the backend interface's."""
    if isinstance(exc, BUSY):
        return BusyError(str(exc))
    if isinstance(exc, psycopg.IntegrityError):
        return ConflictError(str(exc))
    if isinstance(exc, psycopg.OperationalError):
        return UnavailableError(str(exc))
    return StorageError(str(exc))


def _rewrite(match: re.Match[str]) -> str:
    token = match.group()
    return "%s" if token == "?" else token.replace("%", "%%")


@lru_cache(maxsize=4096)
def adapt(sql: str) -> str:
    """A statement written with ``?`` placeholders in psycopg's form: ``%s``, and every
    literal ``%`` doubled (psycopg reads ``%`` everywhere, quotes included). A ``?`` in
    a quoted string (standard quoting: ``''`` for a quote) or a comment stays text."""
    return _TOKEN.sub(_rewrite, sql)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``: the same in every process."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


# Every transaction() holds it from its start to its end, as SQLite's BEGIN IMMEDIATE
# holds the file's write lock: a block that reads, checks and writes (an If-Match, a
# parameter checked against the others) sees no other transaction's commit meanwhile.
WRITE_LOCK = lock_key("write")


class _NumberLoader(Loader):
    """``numeric`` values (only from aggregates and literals here: ``SUM`` of a bigint
    column, ``AVG``) as int or float, the types SQLite gives for the same query."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


class _TextDumper(StrDumperUnknown):
    """Text as psycopg sends it, except the NUL character, which PostgreSQL refuses in
    text (SQLite stores it): U+FFFD instead, so that one stray byte in a SIP header does
    not fail the writer's whole batch of CDRs."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


def _is_dead(conn: Connection) -> bool:
    """True when the server is known to have ended the session while the connection was
    idle (a restart): its goodbye message, then the end of the stream, are waiting to
    be read. One poll of the socket when nothing is waiting."""
    if conn.closed:
        return True
    pgconn = conn.pgconn
    try:
        waiting = select.poll()  # not select(): the engine's descriptors pass 1024
        waiting.register(pgconn.socket, select.POLLIN)
        for _ in range(2):
            if not waiting.poll(0):
                break
            pgconn.consume_input()
    except (psycopg.Error, OSError):
        return True
    return pgconn.status == ConnStatus.BAD


def create_database(admin_url: str, name: str) -> None:
    """``CREATE DATABASE name`` on the server of ``admin_url`` (a new server's first
    database: the cluster lab's); UnavailableError while the server does not answer."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a plain database name: {name!r}")
    try:
        with psycopg.connect(conninfo(admin_url), autocommit=True, connect_timeout=2) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(
                psycopg.sql.Identifier(name)))
    except psycopg.Error as exc:
        raise translate(exc) from exc


def conninfo(url: str) -> str:
    """The URL's connection string with CONNECT_DEFAULTS for what it does not say."""
    return make_conninfo("", **{**CONNECT_DEFAULTS, **conninfo_to_dict(url)})


def _configure(conn: Connection) -> None:
    conn.adapters.register_loader("numeric", _NumberLoader)
    conn.adapters.register_dumper(str, _TextDumper)


def connect(info: str) -> Connection:
    """A new autocommit connection with rows as dicts and the backend's adapters."""
    try:
        conn = psycopg.connect(info, autocommit=True, row_factory=dict_row)
    except psycopg.Error as exc:
        raise translate(exc) from exc
    _configure(conn)
    return conn


class PostgresPool:
    """Connections shared by the threads of one process (the API's request threads),
    through psycopg_pool: at most ``size`` open, opened as requests need them, checked
    with a round trip when taken (one the server ended meanwhile is replaced, not handed
    out), closed after ``IDLE`` seconds unused. Each request takes a
    :class:`PostgresDatabase` from :meth:`database` and closes it at its end, which gives
    the connection back.
    """

    IDLE = 300.0
    WAIT = 5.0  # a request waits this long for a free connection, then is Unavailable

    def __init__(self, url: str, size: int) -> None:
        from psycopg_pool import ConnectionPool

        self.url = url
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            conninfo(url), min_size=1, max_size=max(size, 1), max_idle=self.IDLE,
            kwargs={"autocommit": True, "row_factory": dict_row}, configure=_configure,
            check=ConnectionPool.check_connection, timeout=self.WAIT, open=True,
            name="softswitch")

    def database(self) -> PostgresDatabase:
        return PostgresDatabase(self.url, pool=self)

    def borrow(self) -> Connection:
        from psycopg_pool import PoolTimeout

        try:
            return self._pool.getconn()
        except PoolTimeout as exc:
            raise UnavailableError(f"no database connection within {self.WAIT:g} s "
                                   f"({exc})") from exc

    def give_back(self, conn: Connection) -> None:
        self._pool.putconn(conn)  # a broken or mid-transaction one is discarded

    def close(self) -> None:
        self._pool.close()


class _Listener:
    """The LISTEN connection behind :meth:`PostgresDatabase.change_marker`.

    Reading never blocks (the engine asks from its event loop): pending notifications
    are taken from the socket as they are; opening the connection, the first time and
    after the server went away, is done by a short-lived thread meanwhile.
    """

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._conn: Connection | None = None
        self._opened: Connection | None = None  # handed over by the opening thread
        self._opener: threading.Thread | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._closed = False
        self.count = 0

    @property
    def listening(self) -> bool:
        return self._conn is not None or self._opened is not None

    def poll(self) -> int:
        if self._closed:
            return self.count
        with self._lock:
            if self._opened is not None:
                self._conn, self._opened = self._opened, None
                self.count += 1  # whatever changed while nobody listened
        conn = self._conn
        if conn is None:
            self._open_in_background()
            return self.count
        try:
            conn.pgconn.consume_input()
            while conn.pgconn.notifies() is not None:
                self.count += 1
        except psycopg.Error:
            pass
        if conn.pgconn.status == ConnStatus.BAD:
            conn.close()
            self._conn = None
            self.count += 1
            self._open_in_background()
        return self.count

    def _open_in_background(self) -> None:
        now = time.monotonic()
        if (self._opener is not None and self._opener.is_alive()) or now < self._retry_at:
            return
        self._retry_at = now + LISTEN_RETRY
        self._opener = threading.Thread(target=self._open, name="pg-listen", daemon=True)
        self._opener.start()

    def _open(self) -> None:
        try:
            conn: Connection = self._connect()
        except StorageError:
            return  # the next poll after LISTEN_RETRY tries again
        try:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error:
            conn.close()
            return
        with self._lock:
            if self._closed:
                conn.close()
            else:
                self._opened = conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in (self._conn, self._opened):
                if conn is not None:
                    conn.close()
            self._conn = self._opened = None


_LIFE_SETTINGS = ("SET tcp_keepalives_idle = 2", "SET tcp_keepalives_interval = 1",
                  "SET tcp_keepalives_count = 2", "SET tcp_user_timeout = 4000")


class _SessionLock(HeldLock):
    """An advisory lock held by a session of its own."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def held(self) -> bool:
        if _is_dead(self._conn):
            return False
        try:  # a round trip: a session the server ended is not seen otherwise
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def release(self) -> None:
        self._conn.close()  # the session's end frees its locks


class PostgresDatabase(Database):
    kind = "postgresql"

    def __init__(self, url: str, pool: PostgresPool | None = None) -> None:
        super().__init__(url)
        self._conninfo = conninfo(url)
        self._pool = pool
        self._depth = 0  # transaction() blocks open on this connection
        self._closed = False
        self._listener = _Listener(self._direct)
        self._conn: Connection | None = self._connect()  # a wrong URL fails here

    def _direct(self) -> Connection:
        """A connection of this object's own (never the pool's)."""
        return connect(self._conninfo)

    def _connect(self) -> Connection:
        """The statement connection: the pool's when there is one, else our own."""
        if self._pool is None:
            return self._direct()
        return self._pool.borrow()

    def _release(self, conn: Connection) -> None:
        if self._pool is None:
            conn.close()
        else:
            self._pool.give_back(conn)

    def _live(self) -> Connection:
        """The statement connection, opened again if the server ended the last one.
        Inside a transaction a lost connection is the transaction's end: no reopening."""
        if self._closed:
            raise StorageError("the database was closed")
        conn = self._conn
        if self._depth:
            if conn is None or conn.closed:
                raise UnavailableError("the connection was lost during the transaction")
            return conn
        if conn is None or _is_dead(conn):
            if conn is not None:
                self._release(conn)
            self._conn = None
            self._conn = conn = self._connect()
        return conn

    # -- statements ------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = ()) -> int:
        conn = self._live()
        try:
            return conn.execute(adapt(sql), params).rowcount
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def execute_many(self, sql: str, params: Iterable[Params]) -> None:
        conn = self._live()
        try:
            with conn.cursor() as cursor:
                cursor.executemany(adapt(sql), params)
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def commit_batch(self, statements: Iterable[tuple[str, Params]], order: str) -> None:
        # The whole batch as one multi-statement query (values bound client-side, quoted
        # by libpq): one message, one wait for the answer, and psycopg's work per
        # statement down to the quoting. The writer thread shares the interpreter lock
        # with the event loop, and sending statements one by one (or pipelined) held it
        # for milliseconds per batch: the loop then answered SIP late and calls failed
        # at two thirds of SQLite's calls/s (bench/pgbatch.py, docs/performance.md).
        # The server runs a multi-statement query as one transaction, all or nothing;
        # the transaction-scoped locks last until its end.
        if self._depth:
            super().commit_batch(statements, order)
            return
        conn = self._live()
        binder = psycopg.ClientCursor(conn)
        parts = [f"SELECT pg_advisory_xact_lock({WRITE_LOCK})",
                 f"SELECT pg_advisory_xact_lock({lock_key(order)})"]
        self._depth = 1
        try:
            parts += [binder.mogrify(adapt(sql), params) for sql, params in statements]
            conn.execute(";\n".join(parts).encode())
        except psycopg.Error as exc:
            raise translate(exc) from exc
        finally:
            self._depth = 0

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        conn = self._live()
        try:
            cursor = conn.execute(adapt(sql), params)
            return cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def run_script(self, script: str) -> None:
        """Several statements as they are, no placeholders (the schema baseline: PL/pgSQL
        bodies hold ``;`` and ``?`` of their own)."""
        conn = self._live()
        try:
            conn.execute(script.encode())
        except psycopg.Error as exc:
            raise translate(exc) from exc

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._outermost("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,)):
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._outermost("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"):
            yield

    @contextmanager
    def _outermost(self, first: str, params: Params = ()) -> Iterator[None]:
        """A transaction on the live connection that starts with ``first``."""
        conn = self._live()
        self._depth = 1
        try:
            with conn.transaction():
                conn.execute(first, params)
                yield
        except psycopg.Error as exc:
            raise translate(exc) from exc
        finally:
            self._depth = 0

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    # -- across processes ------------------------------------------------------------------

    def order_commits(self, name: str) -> None:
        # Held to the end of the transaction; the same key across every node.
        self.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))

    def change_marker(self) -> int:
        # Notifications counted, plus a tick every SLOW_POLL: both only ever grow.
        return self._listener.poll() + int(time.monotonic() // SLOW_POLL)

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is open (change_marker() opens it)."""
        return self._listener.listening

    @contextmanager
    def advisory_lock(self, name: str) -> Iterator[None]:
        # A session lock on a connection of its own: the statement connection may be
        # reopened meanwhile, and a process that dies releases the lock with its session.
        conn = self._direct()
        try:
            try:
                conn.execute("SET lock_timeout = 0")  # as long as the holder's job takes
                conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(name),))
            except psycopg.Error as exc:
                raise translate(exc) from exc
            yield
        finally:
            conn.close()

    def try_hold(self, name: str) -> HeldLock | None:
        # A session lock on a connection of its own, kept open while it is held. The
        # server ends a session whose client stopped answering within ~4 s (the
        # keepalive and user timeout below, for a power loss; a killed process's socket
        # is closed by its kernel at once), and the lock with it.
        conn = self._direct()
        try:
            for setting in _LIFE_SETTINGS:
                conn.execute(setting)
            row = conn.execute("SELECT pg_try_advisory_lock(%s) AS taken",
                               (lock_key(name),)).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise translate(exc) from exc
        if not row or not row["taken"]:
            conn.close()
            return None
        return _SessionLock(conn)

    def lock_free(self, name: str) -> bool:
        # On the statement connection, taken and let go in one round trip: no session of
        # its own per look (a node looks at every other node's lock every second).
        row = self.row("SELECT CASE WHEN pg_try_advisory_lock(?) THEN "
                       "pg_advisory_unlock(?) ELSE false END AS free",
                       (lock_key(name), lock_key(name)))
        return bool(row and row["free"])

    # -- life ------------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        if self._conn is not None:
            self._release(self._conn)
            self._conn = None

    def _tables(self) -> Iterator[str]:
        for row in self.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
            yield str(row["tablename"])
