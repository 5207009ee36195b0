"""The number transform table (VOS3000 号码变换表): exact full-number replacements.

One global table of ``number -> replacement`` rows. A gateway with
``caller_transform`` / ``callee_transform`` on replaces its caller / callee with the
row's replacement when the number equals the row's ``number``, right after that
gateway's dial plan (docs/numbers.md, "Order of operations"). One lookup, never
chained, never by prefix: prefix rewriting is the dial plans' job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from b2bua.numbers.lists import is_valid_number


@dataclass(frozen=True, slots=True)
class TransformEntry:
    number: str
    replacement: str
    memo: str = ""


class TransformTable:
    """Immutable ``number -> entry`` map; ``apply`` is one dict lookup per call."""

    __slots__ = ("_entries",)

    def __init__(self, rows: Iterable[tuple[str, str, str] | TransformEntry] = ()) -> None:
        entries: dict[str, TransformEntry] = {}
        for row in rows:
            entry = row if isinstance(row, TransformEntry) else TransformEntry(*row)
            for value in (entry.number, entry.replacement):
                if not is_valid_number(value):
                    raise ValueError(f"invalid number {value!r} in the transform table")
            if entry.number in entries:
                raise ValueError(f"number {entry.number!r} is in the transform table twice")
            entries[entry.number] = entry
        self._entries: Mapping[str, TransformEntry] = MappingProxyType(entries)

    @property
    def entries(self) -> Mapping[str, TransformEntry]:
        return self._entries

    def lookup(self, number: str) -> TransformEntry | None:
        return self._entries.get(number)

    def apply(self, number: str) -> str:
        """The replacement for exactly ``number``; any other number is returned unchanged."""
        entry = self._entries.get(number)
        return number if entry is None else entry.replacement

    def __len__(self) -> int:
        return len(self._entries)
