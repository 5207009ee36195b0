"""``softswitch db copy``: a whole installation from one database into another, SQLite or
PostgreSQL either way, ids kept: configuration, bindings, CDRs with their attempts, the
audit log, API tokens, crash-recovery notes (``active_calls``) and the config counters.

- Both sides at one schema version: the source must be at the newest this softswitch
  knows (an older one is migrated first, by the operator), and the target is migrated
  to it. Each side keeps its own ``schema_migrations``.
- The target must hold nothing beyond what a fresh migrate creates (checked before it is
  migrated, so a refused target is left as it was).
- The source is read in one read-only snapshot, table after table in foreign-key order,
  a batch at a time; the target is written in one transaction, its identity sequences set
  past the copied ids (PostgreSQL), and its row counts compared with the source's before
  the commit. Any failure rolls the target back: nothing is half-copied.
- ``config_versions`` ends as the source's: it is written last, over the counts the
  triggers made while the other tables were being filled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from b2bua.storage import is_postgres, migrate, open_database, sqlite_path
from b2bua.storage.backend import Database, Row
from b2bua.storage.identifiers import column_list, identifier, placeholders
from b2bua.storage.layout import Column, Layout, Table, layout

BATCH = 1000  # rows read and written at a time: millions of CDRs never sit in memory

Target = str | Path
Progress = Callable[[str, int], None]


class CopyError(Exception):
    """The copy was refused or failed, and nothing was copied; the message says why."""


def shown(target: Target) -> str:
    """A database as it may be printed: a URL's password masked."""
    if not is_postgres(target):
        return str(sqlite_path(target))
    parts = urlsplit(str(target))
    if parts.password is None:
        return str(target)
    user, host = parts.netloc.rsplit("@", 1)
    return parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}").geturl()


def copy_database(source: Target, target: Target, *, batch: int = BATCH,
                  progress: Progress | None = None) -> dict[str, int]:
    """Copy everything at ``source`` into ``target``; the rows copied per table, in the
    order they were copied. ``progress`` hears of each table once it is written (not yet
    committed). Raises :class:`CopyError`, ``SchemaTooNewError`` (either side newer than
    this softswitch) or a ``StorageError`` (a database refused a statement)."""
    plan = layout()
    _refuse_same(source, target)
    if not is_postgres(source) and not sqlite_path(source).is_file():
        raise CopyError(f"no database file at {shown(source)}")
    with open_database(source, readonly=True) as src:
        version = _source_version(src, shown(source), plan)
        with open_database(target) as dst:
            _prepare_target(dst, plan, version)
            with _snapshot(src), dst.transaction(), _counters_still(dst, plan):
                copied: dict[str, int] = {}
                for table in plan.tables:
                    copied[table.name] = _copy_table(src, dst, table, batch)
                    if progress is not None:
                        progress(table.name, copied[table.name])
                if dst.kind == "postgresql":
                    _restart_ids(dst, plan)
                _verify(src, dst, plan, copied)
    return copied


def leftovers(database: Database, plan: Layout) -> list[str]:
    """The tables of ``database`` holding a row a fresh migrate does not create. A seeded
    row counts by its key alone: the config counters move with every change made (and
    undone) since, and the copy replaces them with the source's."""
    present = set(database.tables())
    found = []
    for table in plan.tables:
        if table.name not in present:
            continue
        seeded = {_key(table, row) for row in table.seeded}
        rows = database.rows(f"SELECT {column_list(table.key)} FROM {table.name} LIMIT ?",
                             (len(seeded) + 1,))
        if any(_key(table, row) not in seeded for row in rows):
            found.append(table.name)
    return found


# -- the checks before the copy -------------------------------------------------------------


def _refuse_same(source: Target, target: Target) -> None:
    if is_postgres(source) or is_postgres(target):
        same = str(source) == str(target)
    else:
        same = sqlite_path(source).resolve() == sqlite_path(target).resolve()
    if same:
        raise CopyError("the source and the target are the same database")


def _source_version(src: Database, name: str, plan: Layout) -> int:
    try:
        migrate.check_not_newer(src)
    except migrate.SchemaTooNewError as exc:
        raise migrate.SchemaTooNewError(f"the source: {exc}") from None
    have = migrate.current_version(src)
    if have == 0:
        raise CopyError(f"{name} holds no softswitch schema (no schema_migrations)")
    if have < plan.version:
        raise CopyError(f"the source is at schema version {have}, this softswitch at "
                        f"{plan.version}: run `softswitch migrate --db {name}` first (with "
                        "the softswitch stopped), then copy again")
    missing = sorted({t.name for t in plan.tables} - set(src.tables()))
    if missing:
        raise CopyError(f"the source lacks the tables {', '.join(missing)}")
    return have


def _prepare_target(dst: Database, plan: Layout, version: int) -> None:
    try:
        migrate.check_not_newer(dst)
    except migrate.SchemaTooNewError as exc:
        raise migrate.SchemaTooNewError(f"the target: {exc}") from None
    found = leftovers(dst, plan)
    if found:
        raise CopyError(f"the target is not empty: {', '.join(found)} hold rows; copy into "
                        "a new database (or one only migrated)")
    migrate.migrate(dst, version)
    have = migrate.current_version(dst)
    if have != version:
        raise CopyError(f"the target is at schema version {have} after migrating, "
                        f"the source at {version}")


# -- reading and writing ---------------------------------------------------------------------


@contextmanager
def _snapshot(src: Database) -> Iterator[None]:
    """Every read of the block sees the source as it was at the first one, while the
    softswitch may go on writing to it."""
    if src.kind == "postgresql":
        with src.transaction():
            src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    elif src.kind == "sqlite":
        # A deferred transaction: its first read fixes a WAL snapshot, which neither
        # blocks the softswitch's writer nor sees its later commits.
        src.execute("BEGIN")
        try:
            yield
        finally:
            src.execute("ROLLBACK")
    else:
        raise CopyError(f"cannot read a {src.kind} database")


@contextmanager
def _counters_still(dst: Database, plan: Layout) -> Iterator[None]:
    """On PostgreSQL, the config counters' triggers off while the block runs (in its
    transaction: a rollback turns them back on). Each would update one counter row per
    copied row, and within one transaction each update of a row costs more than the
    last (it passes every version the transaction made before): a list of a million
    numbers would take hours. SQLite updates the row in place; its triggers stay on.
    Either way the counters end as the source's."""
    if dst.kind != "postgresql":
        yield
        return
    for table in plan.tables:
        dst.execute(f"ALTER TABLE {table.name} DISABLE TRIGGER USER")
    yield
    for table in plan.tables:
        dst.execute(f"ALTER TABLE {table.name} ENABLE TRIGGER USER")


def _copy_table(src: Database, dst: Database, table: Table, batch: int) -> int:
    statement = _insert_statement(table)
    convert = _converter(table)
    copied = 0
    for rows in _batches(src, table, batch):
        dst.execute_many(statement, [convert(row) for row in rows])
        copied += len(rows)
    return copied


def _batches(src: Database, table: Table, size: int) -> Iterator[list[Row]]:
    """The table's rows in primary-key order, ``size`` at a time: each batch starts after
    the last key of the one before (an index range scan, however far in)."""
    columns, key = column_list(table.column_names), column_list(table.key)
    first = f"SELECT {columns} FROM {table.name} ORDER BY {key} LIMIT ?"
    after = (f"SELECT {columns} FROM {table.name} WHERE ({key}) > "
             f"({placeholders(len(table.key))}) ORDER BY {key} LIMIT ?")
    rows = src.rows(first, (size,))
    while rows:
        yield rows
        if len(rows) < size:
            return
        rows = src.rows(after, (*_key(table, rows[-1]), size))


def _insert_statement(table: Table) -> str:
    """A plain INSERT; for a seeded table an upsert, the source's row replacing the
    seeded one of the same key."""
    columns = table.column_names
    statement = (f"INSERT INTO {identifier(table.name)} ({column_list(columns)}) "
                 f"VALUES ({placeholders(len(columns))})")
    if not table.seeded:
        return statement
    others = [c for c in columns if c not in table.key]
    action = ("DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in others)
              if others else "DO NOTHING")
    return f"{statement} ON CONFLICT ({column_list(table.key)}) {action}"


def _restart_ids(dst: Database, plan: Layout) -> None:
    """Identity columns do not follow explicitly inserted ids: each one restarts after the
    highest copied id. ALTER rather than setval(), which a rollback would not undo."""
    for table in plan.tables:
        if table.auto_id:
            following = int(dst.value(
                f"SELECT COALESCE(MAX(id), 0) + 1 AS following FROM {table.name}"))
            dst.execute(f"ALTER TABLE {table.name} ALTER COLUMN id RESTART WITH {following}")


def _verify(src: Database, dst: Database, plan: Layout, copied: dict[str, int]) -> None:
    wrong = []
    for table in plan.tables:
        statement = f"SELECT COUNT(*) AS n FROM {table.name}"
        have, got = int(src.value(statement)), int(dst.value(statement))
        if not have == copied[table.name] == got:
            wrong.append(f"{table.name}: source {have}, copied {copied[table.name]}, "
                         f"target {got}")
    if wrong:
        raise CopyError("the row counts differ: " + "; ".join(wrong))


# -- values ----------------------------------------------------------------------------------
# SQLite keeps whatever value it is given where it cannot convert it (text in an INTEGER
# column); PostgreSQL would round a fraction into a bigint. Each value is checked against
# its column's kind and made the Python type both drivers store as that kind.


def _integer(value: Any) -> int:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError


def _real(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    raise ValueError


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError


def _blob(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise ValueError


def _numeric(value: Any) -> int | float:
    if isinstance(value, int | float):
        return value
    raise ValueError


CONVERT: dict[str, Callable[[Any], Any]] = {
    "integer": _integer, "real": _real, "text": _text, "blob": _blob, "numeric": _numeric,
}


def _converter(table: Table) -> Callable[[Row], tuple[Any, ...]]:
    columns = [(column, CONVERT[column.kind]) for column in table.columns]

    def convert(row: Row) -> tuple[Any, ...]:
        values = []
        for column, to_kind in columns:
            value = row[column.name]
            try:
                values.append(None if value is None else to_kind(value))
            except ValueError:
                raise _bad_value(table, column, row) from None
        return tuple(values)

    return convert


def _bad_value(table: Table, column: Column, row: Row) -> CopyError:
    key = ", ".join(f"{k} = {row[k]!r}" for k in table.key)
    return CopyError(f"{table.name}.{column.name} of the row {key} holds "
                     f"{row[column.name]!r}, not a value of its type ({column.kind})")


def _key(table: Table, row: Row) -> tuple[Any, ...]:
    return tuple(row[k] for k in table.key)
