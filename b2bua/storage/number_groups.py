"""The numbers of a number group (a black or white list), kept in order by number."""

from __future__ import annotations

from collections.abc import Iterable

from b2bua.storage.backend import Database


def count(db: Database, group_id: int) -> int:
    return int(db.value(
        "SELECT COUNT(*) AS n FROM number_group_members WHERE group_id = ?", (group_id,)))


def numbers_after(db: Database, group_id: int, after: str, limit: int) -> list[str]:
    """Up to ``limit`` of the group's numbers sorting after ``after``, in order."""
    rows = db.rows(
        "SELECT number FROM number_group_members WHERE group_id = ? AND number > ? "
        "ORDER BY number LIMIT ?", (group_id, after, limit))
    return [str(r["number"]) for r in rows]


def add(db: Database, group_id: int, numbers: Iterable[str]) -> None:
    """Add ``numbers``; one already in the group stays as it is."""
    db.execute_many(
        "INSERT INTO number_group_members (group_id, number) VALUES (?, ?) "
        "ON CONFLICT (group_id, number) DO NOTHING", [(group_id, n) for n in numbers])


def remove(db: Database, group_id: int, numbers: Iterable[str]) -> None:
    db.execute_many(
        "DELETE FROM number_group_members WHERE group_id = ? AND number = ?",
        [(group_id, n) for n in numbers])


def clear(db: Database, group_id: int) -> None:
    """Remove every number of the group (before the group itself goes)."""
    db.execute("DELETE FROM number_group_members WHERE group_id = ?", (group_id,))
