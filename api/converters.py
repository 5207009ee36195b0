"""URL converters: ``<int:...>`` limited to SQLite's integer range.

A larger id cannot name a row, and passed on it would overflow SQLite's integers. It
is mapped to -1 (no row has it), so the view answers its usual 404.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter

SQLITE_MAX_INT = 2**63 - 1
NO_ROW = -1


class RowIdConverter(IntegerConverter):
    def to_python(self, value: str) -> Any:
        number = super().to_python(value)
        return number if number <= SQLITE_MAX_INT else NO_ROW
