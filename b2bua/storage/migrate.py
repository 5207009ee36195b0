"""Apply the numbered migrations with sqlite-utils; refuse databases newer than the code."""

from __future__ import annotations

import sqlite3
import time

import sqlite_utils

import migrations


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer softswitch than this one."""


def latest_version() -> int:
    return max(int(m.VERSION) for m in migrations.load_all())


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    db = sqlite_utils.Database(conn)
    if "schema_migrations" not in db.table_names():
        return set()
    return {int(row["version"]) for row in db["schema_migrations"].rows}


def current_version(conn: sqlite3.Connection) -> int:
    return max(applied_versions(conn), default=0)


def check_not_newer(conn: sqlite3.Connection) -> None:
    have, know = current_version(conn), latest_version()
    if have > know:
        raise SchemaTooNewError(
            f"database schema version {have} is newer than this softswitch knows "
            f"(up to {know}); run the newer softswitch or restore a backup"
        )


def migrate(conn: sqlite3.Connection, target: int | None = None) -> list[int]:
    """Apply every missing migration up to ``target`` (default: all); returns those applied.

    Each migration runs in its own transaction together with its bookkeeping row, so
    a crash leaves the database at a clean version and a rerun continues from there.
    """
    check_not_newer(conn)
    db = sqlite_utils.Database(conn)
    if "schema_migrations" not in db.table_names():
        db.table("schema_migrations").create(
            {"version": int, "name": str, "applied_at": float}, pk="version"
        )
    done = applied_versions(conn)
    applied: list[int] = []
    for module in migrations.load_all():
        version = int(module.VERSION)
        if version in done or (target is not None and version > target):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            module.up(db)
            db.table("schema_migrations").insert(
                {"version": version, "name": module.__name__.rsplit(".", 1)[-1],
                 "applied_at": time.time()}
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(version)
    return applied
