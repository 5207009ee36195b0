"""Black/white lists: named number groups (exact match) and prefix allow/deny lists.

Groups are VOS3000's "black/white list groups": full numbers, possibly hundreds of
thousands of them, so membership is a frozenset lookup. Prefix lists cover ranges.
Every check here is pure; ``refusal`` returns the CDR reason the engine records
with its 403, ``permits`` is the same test as a bool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

MAX_NUMBER_CHARS: Final = 64
NUMBER_CHARS: Final = frozenset(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#+*"
)
_SEPARATORS: Final = re.compile(r"[\s,;]+")

Mode = Literal["allow", "deny"]
Side = Literal["caller", "callee"]


def is_valid_number(text: str) -> bool:
    """A full number as stored in groups and the transform table."""
    return 0 < len(text) <= MAX_NUMBER_CHARS and all(ch in NUMBER_CHARS for ch in text)


def parse_numbers(text: str) -> tuple[str, ...]:
    """A bulk import body: numbers separated by commas, semicolons or whitespace.

    Duplicates are dropped (first kept). Raises ``ValueError`` naming the first bad
    entry and its 1-based index, so one request can carry thousands of numbers.
    """
    seen: dict[str, None] = {}
    for index, entry in enumerate(e for e in _SEPARATORS.split(text) if e):
        if not is_valid_number(entry):
            raise ValueError(f"entry {index + 1} ({entry[:80]!r}) is not a valid number")
        seen.setdefault(entry, None)
    return tuple(seen)


def parse_list(text: str) -> tuple[str, ...]:
    """A comma-separated field (group names, prefixes): items stripped, empties dropped."""
    return tuple(item for item in (part.strip() for part in text.split(",")) if item)


class NumberGroups:
    """Named, immutable sets of full numbers; unknown names are empty groups."""

    __slots__ = ("_groups",)

    def __init__(self, groups: Mapping[str, Iterable[str]] | None = None) -> None:
        self._groups: dict[str, frozenset[str]] = {
            name: frozenset(numbers) for name, numbers in (groups or {}).items()
        }

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]]) -> NumberGroups:
        """From ``(group name, number)`` rows, as a members table stores them."""
        groups: dict[str, set[str]] = {}
        for name, number in rows:
            groups.setdefault(name, set()).add(number)
        return cls(groups)

    def with_group(self, name: str, numbers: Iterable[str]) -> NumberGroups:
        """A copy with ``name`` replaced by ``numbers``; other groups are shared, not copied."""
        copy = NumberGroups()
        copy._groups = {**self._groups, name: frozenset(numbers)}
        return copy

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._groups)

    def numbers(self, name: str) -> frozenset[str]:
        return self._groups.get(name, frozenset())

    def first_containing(self, group_names: Iterable[str], number: str) -> str | None:
        """The first of ``group_names`` holding ``number``, for the refusal reason."""
        for name in group_names:
            members = self._groups.get(name)
            if members is not None and number in members:
                return name
        return None

    def contains(self, group_names: Iterable[str], number: str) -> bool:
        return self.first_containing(group_names, number) is not None

    def __len__(self) -> int:
        return len(self._groups)


@dataclass(frozen=True, slots=True)
class GroupRule:
    """A gateway's ``*_groups`` + ``*_groups_mode``: allow = only these, deny = not these.

    No groups means no restriction in either mode. An allow rule naming only unknown
    or empty groups refuses everything: a whitelist fails closed.
    """

    groups: tuple[str, ...] = ()
    mode: Mode = "allow"

    def __post_init__(self) -> None:
        if self.mode not in ("allow", "deny"):
            raise ValueError(f"groups mode must be 'allow' or 'deny', not {self.mode!r}")
        if any(not name for name in self.groups):
            raise ValueError("empty group name")

    def refusal(self, number: str, groups: NumberGroups, side: Side) -> str | None:
        """The reason ``number`` is refused (e.g. ``caller in deny group "fraud"``), or None."""
        if not self.groups:
            return None
        hit = groups.first_containing(self.groups, number)
        if self.mode == "deny":
            return None if hit is None else f'{side} in deny group "{hit}"'
        if hit is not None:
            return None
        plural = "s" if len(self.groups) > 1 else ""
        names = ", ".join(f'"{name}"' for name in self.groups)
        return f"{side} not in allow group{plural} {names}"

    def permits(self, number: str, groups: NumberGroups) -> bool:
        return self.refusal(number, groups, "caller") is None


class _PrefixSet:
    """Prefixes indexed by length: a lookup costs one dict probe per distinct length."""

    __slots__ = ("_lengths", "_prefixes")

    def __init__(self, prefixes: Iterable[str]) -> None:
        self._prefixes = frozenset(prefixes)
        self._lengths = tuple(sorted({len(p) for p in self._prefixes}, reverse=True))

    def longest_match(self, number: str) -> str | None:
        for length in self._lengths:
            if length <= len(number) and number[:length] in self._prefixes:
                return number[:length]
        return None

    def __bool__(self) -> bool:
        return bool(self._prefixes)


@dataclass(frozen=True, slots=True)
class PrefixRule:
    """``callee_prefixes_allow`` / ``callee_prefixes_deny``, any-prefix semantics.

    A number starting with any deny prefix is refused, even when a longer allow prefix
    also matches (deny wins: safe for fraud ranges). Otherwise an empty allow list
    allows everything and a non-empty one requires some allow prefix to match.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    _allow: _PrefixSet = field(init=False, repr=False, compare=False)
    _deny: _PrefixSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for prefix in (*self.allow, *self.deny):
            if not is_valid_number(prefix):
                raise ValueError(f"invalid prefix {prefix!r}")
        object.__setattr__(self, "_allow", _PrefixSet(self.allow))
        object.__setattr__(self, "_deny", _PrefixSet(self.deny))

    def longest_denied(self, number: str) -> str | None:
        return self._deny.longest_match(number)

    def longest_allowed(self, number: str) -> str | None:
        return self._allow.longest_match(number)

    def refusal(self, number: str, side: Side = "callee") -> str | None:
        """The reason ``number`` is refused (e.g. ``callee prefix "900" denied``), or None."""
        denied = self._deny.longest_match(number)
        if denied is not None:
            return f'{side} prefix "{denied}" denied'
        if self._allow and self._allow.longest_match(number) is None:
            return f"{side} matches no allowed prefix"
        return None

    def permits(self, number: str) -> bool:
        return self.refusal(number) is None
