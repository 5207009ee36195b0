"""The softswitch's tables as the migrations build them: columns and the kind of value each
holds, primary keys, the order foreign keys impose, and the rows a fresh migrate seeds.

Read once from an in-memory SQLite database migrated from scratch, so the copy tool
(``b2bua/storage/copy.py``) follows every new migration without a change of its own;
the PostgreSQL baseline builds the same tables (``tests/integration/test_schema_parity.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from b2bua.storage import migrate
from b2bua.storage.backend import Database, Row
from b2bua.storage.identifiers import identifier
from b2bua.storage.sqlite import SqliteDatabase

# Each database records the versions it was migrated through itself: not data to copy.
BOOKKEEPING = "schema_migrations"


def value_kind(declared: str) -> str:
    """SQLite's affinity of a declared column type, by its rules in their order:
    ``integer``, ``text``, ``blob``, ``real`` or ``numeric`` (bigint, text, bytea,
    double precision on PostgreSQL)."""
    upper = declared.upper()
    if "INT" in upper:
        return "integer"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if not upper or "BLOB" in upper:
        return "blob"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "numeric"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # see value_kind()


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # the primary key's columns, in order
    parents: frozenset[str]  # the other tables its foreign keys point to
    seeded: tuple[Row, ...]  # the rows a fresh migrate inserts

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def auto_id(self) -> bool:
        """Numbered by the database (SQLite's rowid, a PostgreSQL identity column)."""
        return self.key == ("id",) and any(c.name == "id" and c.kind == "integer"
                                           for c in self.columns)


@dataclass(frozen=True)
class Layout:
    version: int  # the schema version it describes: the newest this softswitch knows
    tables: tuple[Table, ...]  # parents before children; seeded tables last

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


@lru_cache(maxsize=1)
def layout() -> Layout:
    """The layout of the newest schema (every table but :data:`BOOKKEEPING`)."""
    with SqliteDatabase(":memory:") as fresh:
        migrate.migrate(fresh)
        tables = [_table(fresh, name) for name in fresh.tables() if name != BOOKKEEPING]
        return Layout(migrate.current_version(fresh), _ordered(tables))


def _table(fresh: Database, name: str) -> Table:
    info = fresh.rows(f"PRAGMA table_info({identifier(name)})")
    key = tuple(c["name"] for c in sorted(info, key=lambda c: c["pk"]) if c["pk"])
    if not key:
        # Copying in batches pages through a table by its primary key.
        raise ValueError(f"table {name} has no primary key: the copy tool cannot page it")
    parents = {str(k["table"]) for k in fresh.rows(f"PRAGMA foreign_key_list({name})")}
    return Table(
        name=name,
        columns=tuple(Column(str(c["name"]), value_kind(str(c["type"]))) for c in info),
        key=key,
        parents=frozenset(parents - {name}),
        seeded=tuple(fresh.rows(f"SELECT * FROM {name}")),
    )


def _ordered(tables: list[Table]) -> tuple[Table, ...]:
    """Parents before their children, by name otherwise; a seeded table (the config
    counters) as late as its children allow, so that it is written after every table
    whose triggers move it."""
    left = {t.name: t for t in tables}
    done: list[Table] = []
    while left:
        ready = [t for t in left.values() if not t.parents & left.keys()]
        if not ready:
            raise ValueError(f"foreign keys form a cycle among {sorted(left)}")
        first = min(ready, key=lambda t: (bool(t.seeded), t.name))
        done.append(left.pop(first.name))
    return tuple(done)
