"""Whether the database answers: the health check's question."""

from __future__ import annotations

from b2bua.storage.backend import Database


def answers(database: Database) -> bool:
    """One trivial query; the caller treats a ``StorageError`` as "down"."""
    return bool(database.value("SELECT 1 AS up") == 1)
