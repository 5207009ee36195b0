"""Storage: the schema, every SQL statement, and the backends that run them.

Only modules of this package (and ``migrations/``) hold SQL or import a database
driver; ``tests/unit/test_storage_boundary.py`` fails otherwise. The rest of the
softswitch opens a :class:`~b2bua.storage.backend.Database` with :func:`open_database`
and calls this package's functions, which take and return objects.
"""

from __future__ import annotations

from pathlib import Path

from b2bua.storage.backend import Database

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:///"


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(POSTGRES_SCHEMES)


def sqlite_path(target: str | Path) -> Path:
    """The file of a SQLite target: a path, or ``sqlite:///relative`` /
    ``sqlite:////absolute``."""
    text = str(target)
    return Path(text[len(SQLITE_SCHEME):] if text.startswith(SQLITE_SCHEME) else text)


def open_database(target: str | Path, *, readonly: bool = False) -> Database:
    """The database at ``target``: a ``postgresql://`` URL, else a SQLite file."""
    if is_postgres(target):
        from b2bua.storage.postgres import PostgresDatabase  # the driver is an extra

        return PostgresDatabase(str(target))
    from b2bua.storage.sqlite import SqliteDatabase

    return SqliteDatabase(sqlite_path(target), readonly=readonly)
