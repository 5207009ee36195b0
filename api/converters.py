"""URL converters: ``<int:...>`` limited to SQLite's integer range.

A larger id cannot name a row; without the bound it reaches SQLite and overflows.
Out of range, the route does not match and the client gets 404.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter, Map

SQLITE_MAX_INT = 2**63 - 1


class RowIdConverter(IntegerConverter):
    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", SQLITE_MAX_INT)
        super().__init__(url_map, *args, **kwargs)
