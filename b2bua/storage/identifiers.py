"""Table and column names put into statements: checked, since only values can be bound."""

from __future__ import annotations

import re
from collections.abc import Iterable

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")


def identifier(name: str) -> str:
    """``name`` unchanged when it is a plain lower-case SQL name; ValueError otherwise."""
    if not _NAME.match(name):
        raise ValueError(f"not a column or table name: {name!r}")
    return name


def column_list(names: Iterable[str]) -> str:
    """``a, b, c`` from checked names."""
    return ", ".join(identifier(n) for n in names)


def placeholders(count: int) -> str:
    """``?, ?, ?``: one per value."""
    return ", ".join("?" * count)
