"""Apply the numbered migrations to either backend; refuse databases newer than the code.

SQLite: every migration's ``up(db)`` in order, with sqlite-utils. PostgreSQL: an empty
database gets ``migrations/postgresql_baseline.sql``, the schema of versions 1 to
:data:`POSTGRESQL_BASELINE` in one step, and each later version its
``up_postgresql(database)``. Either way a version is applied in one transaction together
with its ``schema_migrations`` row, and the whole run holds the ``migrate`` advisory
lock, so two nodes starting together do not both migrate.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import sqlite_utils

import migrations
from b2bua.storage.backend import Database
from b2bua.storage.sqlite import SqliteDatabase

POSTGRESQL_BASELINE = 13
BASELINE_SQL = Path(migrations.__file__).with_name("postgresql_baseline.sql")


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer softswitch than this one."""


class MigrationError(RuntimeError):
    """A migration cannot be applied to this database as it is."""


def latest_version() -> int:
    return max(int(m.VERSION) for m in migrations.load_all())


def applied_versions(database: Database) -> set[int]:
    if "schema_migrations" not in database.tables():
        return set()
    return {int(row["version"]) for row in database.rows("SELECT version FROM schema_migrations")}


def current_version(database: Database) -> int:
    return max(applied_versions(database), default=0)


def check_not_newer(database: Database) -> None:
    have, know = current_version(database), latest_version()
    if have > know:
        raise SchemaTooNewError(
            f"database schema version {have} is newer than this softswitch knows "
            f"(up to {know}); run the newer softswitch or restore a backup"
        )


def migrate(database: Database, target: int | None = None) -> list[int]:
    """Apply every missing migration up to ``target`` (default: all); returns those applied.

    Each migration runs in its own transaction together with its bookkeeping row, so
    a crash leaves the database at a clean version and a rerun continues from there.
    """
    with database.advisory_lock("migrate"):
        check_not_newer(database)
        if isinstance(database, SqliteDatabase):
            return _migrate_sqlite(database, target)
        if database.kind == "postgresql":
            return _migrate_postgresql(database, target)
        raise MigrationError(f"no migrations for a {database.kind} database")


def _pending(done: set[int], target: int | None) -> list[ModuleType]:
    return [m for m in migrations.load_all()
            if int(m.VERSION) not in done and (target is None or int(m.VERSION) <= target)]


def _record(database: Database, modules: list[ModuleType]) -> None:
    database.execute_many(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        [(int(m.VERSION), m.__name__.rsplit(".", 1)[-1], time.time()) for m in modules])


# -- SQLite ------------------------------------------------------------------------------


@contextmanager
def _sqlite_utils(database: SqliteDatabase) -> Iterator[sqlite_utils.Database]:
    """sqlite-utils on the database's own connection; it reads rows by position, so
    the connection hands out ``sqlite3.Row`` meanwhile instead of dicts."""
    conn = database.connection
    saved = conn.row_factory
    conn.row_factory = sqlite3.Row
    try:
        yield sqlite_utils.Database(conn)
    finally:
        conn.row_factory = saved


def _migrate_sqlite(database: SqliteDatabase, target: int | None) -> list[int]:
    conn = database.connection
    with _sqlite_utils(database) as db:
        if "schema_migrations" not in db.table_names():
            db.table("schema_migrations").create(
                {"version": int, "name": str, "applied_at": float}, pk="version"
            )
        applied: list[int] = []
        for module in _pending(applied_versions(database), target):
            conn.execute("BEGIN IMMEDIATE")
            try:
                module.up(db)
                _record(database, [module])
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            applied.append(int(module.VERSION))
    return applied


# -- PostgreSQL --------------------------------------------------------------------------


def _migrate_postgresql(database: Database, target: int | None) -> list[int]:
    from b2bua.storage.postgres import PostgresDatabase  # the driver is an extra

    assert isinstance(database, PostgresDatabase)
    done = applied_versions(database)
    pending = _pending(done, target)
    baseline = [m for m in pending if int(m.VERSION) <= POSTGRESQL_BASELINE]
    later = [m for m in pending if int(m.VERSION) > POSTGRESQL_BASELINE]
    if baseline and done:
        raise MigrationError(
            f"PostgreSQL database has schema versions {sorted(done)} but lacks "
            f"{[int(m.VERSION) for m in baseline]}: it was not made by these migrations")
    if baseline and target is not None and target < POSTGRESQL_BASELINE:
        raise MigrationError(f"on PostgreSQL the schema starts at version "
                             f"{POSTGRESQL_BASELINE} (the baseline); cannot stop at {target}")
    lacking = [m.__name__ for m in later if not hasattr(m, "up_postgresql")]
    if lacking:
        raise MigrationError(f"migrations without up_postgresql(database), so they cannot "
                             f"run on PostgreSQL: {', '.join(lacking)}")
    applied: list[int] = []
    if baseline:
        with database.transaction():
            database.run_script(BASELINE_SQL.read_text())
            _record(database, baseline)
        applied += [int(m.VERSION) for m in baseline]
    for module in later:
        with database.transaction():
            module.up_postgresql(database)
            _record(database, [module])
        applied.append(int(module.VERSION))
    return applied
