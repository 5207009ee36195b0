"""Rows of the configuration tables the API edits generically, by id.

Values are plain dicts keyed by column; a boolean is stored as the integer 0 or 1, as
every table of the schema keeps it. Table and column names come from code, and are
checked (the table against :data:`CONFIG_TABLES`) before they reach a statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from b2bua.storage.backend import Database, Row
from b2bua.storage.identifiers import column_list, identifier, placeholders

CONFIG_TABLES = frozenset({
    "mapping_gateways", "routing_gateways", "phones", "number_transforms", "number_groups",
    "webhooks",
})


def config_table(table: str) -> str:
    """``table`` when the API may edit it; ValueError otherwise."""
    if table not in CONFIG_TABLES:
        raise ValueError(f"{table!r} is not a configuration table")
    return table


def _stored(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def get(db: Database, table: str, item_id: int) -> Row | None:
    return db.row(f"SELECT * FROM {config_table(table)} WHERE id = ?", (item_id,))


def list_after(db: Database, table: str, after_id: int, limit: int,
               equal: Mapping[str, Any] | None = None) -> list[Row]:
    """Up to ``limit`` rows with an id above ``after_id``, in id order, whose columns
    equal ``equal``'s values."""
    where = ["id > ?", *(f"{identifier(column)} = ?" for column in equal or {})]
    values = [_stored(v) for v in (equal or {}).values()]
    return db.rows(
        f"SELECT * FROM {config_table(table)} WHERE {' AND '.join(where)} "
        "ORDER BY id LIMIT ?", (after_id, *values, limit))


def insert(db: Database, table: str, values: Mapping[str, Any]) -> int:
    """Insert one row; its new id. ConflictError when a unique column is taken."""
    return db.insert(
        f"INSERT INTO {config_table(table)} ({column_list(values)}) "
        f"VALUES ({placeholders(len(values))}) RETURNING id",
        [_stored(v) for v in values.values()])


def update(db: Database, table: str, item_id: int, values: Mapping[str, Any]) -> int:
    """Set ``values``' columns of one row; how many rows changed (0 or 1)."""
    assignments = ", ".join(f"{identifier(column)} = ?" for column in values)
    return db.execute(
        f"UPDATE {config_table(table)} SET {assignments} WHERE id = ?",
        (*(_stored(v) for v in values.values()), item_id))


def delete(db: Database, table: str, item_id: int) -> int:
    """Delete one row; how many rows went (0 or 1)."""
    return db.execute(f"DELETE FROM {config_table(table)} WHERE id = ?", (item_id,))
