"""Dial plans: VOS3000's per-gateway number rewrite rules, ``ORIGINAL:TARGET,...``.

The full syntax, with examples, is in docs/numbers.md. In short:

* ORIGINAL is a literal prefix (``0-9 A-Z a-z # +``), optionally followed by ``*``
  (the same match; a bare ``*`` is the empty prefix, matching every number), then
  optional length conditions ``{L11}`` ``{E11}`` ``{G11}`` ``{F11}`` on the whole
  number's length (less than, equal to, greater than, not equal to 11), all of which
  must hold.
* The longest matching prefix wins; among rules with that prefix the first listed
  whose conditions hold. Rules are never chained. No match: the number is unchanged.
* TARGET: literals are copied, ``$`` copies the number's character at the ``$``'s own
  index in TARGET (nothing past the number's end), ``?`` is a random digit, ``*`` is
  the rest of the number after the matched prefix; with no ``*`` the rest is appended.

A plan is parsed once and is immutable; ``apply`` runs per call, so matching is a dict
lookup per distinct prefix length and rewriting walks a pre-compiled TARGET.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, Literal

MAX_PLAN_CHARS: Final = 4096
MAX_RULES: Final = 1000
MAX_LENGTH: Final = 99  # largest N in a length condition

LITERALS: Final = frozenset(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#+"
)
_DIGITS: Final = "0123456789"
_ASCII_DIGITS: Final = frozenset(_DIGITS)

# Compiled TARGET pieces: a str is copied, an int >= 0 is a `$` position.
_RANDOM: Final = -1
_REST: Final = -2

LengthOp = Literal["L", "E", "G", "F"]
_OPS: Final[dict[str, LengthOp]] = {"L": "L", "E": "E", "G": "G", "F": "F"}


class DialPlanError(ValueError):
    """A plan the API must refuse; ``position`` is the 0-based index in the plan text."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class LengthCondition:
    """VOS3000's L/E/G/F escape: a test on the whole number's length."""

    op: LengthOp
    n: int

    def holds(self, length: int) -> bool:
        if self.op == "L":
            return length < self.n
        if self.op == "E":
            return length == self.n
        if self.op == "G":
            return length > self.n
        return length != self.n

    def __str__(self) -> str:
        return f"{{{self.op}{self.n}}}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``ORIGINAL:TARGET`` rule; build plans with ``DialPlan.parse``."""

    prefix: str
    star: bool
    conditions: tuple[LengthCondition, ...]
    target: str
    _pieces: tuple[str | int, ...] = field(init=False, repr=False, compare=False)
    _has_rest: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pieces: list[str | int] = []
        literal: list[str] = []
        for index, ch in enumerate(self.target):
            if ch in LITERALS:
                literal.append(ch)
                continue
            if literal:
                pieces.append("".join(literal))
                literal = []
            pieces.append(index if ch == "$" else _RANDOM if ch == "?" else _REST)
        if literal:
            pieces.append("".join(literal))
        object.__setattr__(self, "_pieces", tuple(pieces))
        object.__setattr__(self, "_has_rest", "*" in self.target)

    @property
    def original(self) -> str:
        return self.prefix + ("*" if self.star else "") + "".join(map(str, self.conditions))

    def accepts_length(self, length: int) -> bool:
        return all(c.holds(length) for c in self.conditions)

    def matches(self, number: str) -> bool:
        return number.startswith(self.prefix) and self.accepts_length(len(number))

    def rewrite(self, number: str, rng: random.Random) -> str:
        """The rewritten number; assumes ``matches(number)``."""
        rest = number[len(self.prefix):]
        out: list[str] = []
        for piece in self._pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif piece >= 0:
                out.append(number[piece:piece + 1])  # empty past the number's end
            elif piece == _RANDOM:
                out.append(_DIGITS[rng.randrange(10)])
            else:
                out.append(rest)
        if not self._has_rest:
            out.append(rest)
        return "".join(out)

    def __str__(self) -> str:
        return f"{self.original}:{self.target}"


_DEFAULT_RNG: Final = random.Random()


class DialPlan:
    """An immutable, parsed dial plan. Build it with ``DialPlan.parse``."""

    __slots__ = ("_index", "_lengths", "_rules", "_text")

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules = tuple(rules)
        index: dict[str, list[Rule]] = {}
        for rule in self._rules:
            index.setdefault(rule.prefix, []).append(rule)
        self._index = {prefix: tuple(group) for prefix, group in index.items()}
        self._lengths = tuple(sorted({len(p) for p in self._index}, reverse=True))
        self._text = ",".join(map(str, self._rules))

    @classmethod
    def parse(cls, text: str) -> DialPlan:
        """Parse and validate ``text``; raises ``DialPlanError`` naming the position."""
        if len(text) > MAX_PLAN_CHARS:
            raise DialPlanError(f"plan is longer than {MAX_PLAN_CHARS} characters", MAX_PLAN_CHARS)
        if not text.strip():
            return cls()
        rules: list[Rule] = []
        seen: dict[tuple[str, frozenset[LengthCondition]], int] = {}
        covered: dict[str, set[int]] = {}
        start = 0
        for count, segment in enumerate(text.split(",")):
            seg_start, start = start, start + len(segment) + 1
            body = segment.strip()
            position = seg_start + len(segment) - len(segment.lstrip())
            if count == MAX_RULES:
                raise DialPlanError(f"more than {MAX_RULES} rules", position)
            if not body:
                raise DialPlanError("empty rule", position)
            rule, lengths = _parse_rule(body, position)
            key = (rule.prefix, frozenset(rule.conditions))
            if key in seen:
                raise DialPlanError(
                    f"duplicate ORIGINAL {rule.original!r} (same as the rule at position "
                    f"{seen[key]})", position)
            seen[key] = position
            earlier = covered.setdefault(rule.prefix, set())
            if lengths <= earlier:
                raise DialPlanError(
                    f"rule {str(rule)!r} can never apply: earlier rules with the prefix "
                    f"{rule.prefix or '*'!r} match every number it would", position)
            earlier |= lengths
            rules.append(rule)
        return cls(rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    def rule_for(self, number: str) -> Rule | None:
        """The rule that rewrites ``number``: longest prefix, then first listed."""
        size = len(number)
        for length in self._lengths:
            if length > size:
                continue
            group = self._index.get(number[:length])
            if group is not None:
                for rule in group:
                    if rule.accepts_length(size):
                        return rule
        return None

    def matches(self, number: str) -> bool:
        return self.rule_for(number) is not None

    def apply(self, number: str, rng: random.Random | None = None) -> str:
        rule = self.rule_for(number)
        if rule is None:
            return number
        return rule.rewrite(number, rng if rng is not None else _DEFAULT_RNG)

    def __len__(self) -> int:
        return len(self._rules)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"DialPlan.parse({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DialPlan) and self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)


@lru_cache(maxsize=4096)
def cached_plan(text: str) -> DialPlan:
    """``DialPlan.parse`` memoised, for callers that keep plans as text (plans are immutable)."""
    return DialPlan.parse(text)


def _parse_rule(body: str, base: int) -> tuple[Rule, set[int]]:
    """One stripped rule starting at ``base``; also the lengths (capped) it can match."""
    colon = body.find(":")
    if colon < 0:
        raise DialPlanError(f"rule {body!r} has no ':' between ORIGINAL and TARGET", base)
    original, target = body[:colon], body[colon + 1:]
    if not original:
        raise DialPlanError("empty ORIGINAL (write '*' to match every number)", base)

    i = 0
    while i < len(original) and original[i] in LITERALS:
        i += 1
    prefix = original[:i]
    star = i < len(original) and original[i] == "*"
    if star:
        i += 1
        if i < len(original) and (original[i] in LITERALS or original[i] == "*"):
            raise DialPlanError(
                "'*' is only allowed at the end of the ORIGINAL prefix", base + i - 1)
    conditions: list[LengthCondition] = []
    first_brace = base + i
    while i < len(original):
        ch = original[i]
        if ch == "{":
            condition, end = _parse_condition(original, i, base)
            if condition in conditions:
                raise DialPlanError(f"repeated length condition {condition}", base + i)
            conditions.append(condition)
            i = end
        elif conditions and ch == "*":
            raise DialPlanError("'*' must come before the length conditions", base + i)
        elif conditions and ch in LITERALS:
            raise DialPlanError("length conditions must come last in ORIGINAL", base + i)
        else:
            raise DialPlanError(f"character {ch!r} is not allowed in ORIGINAL", base + i)

    # Lengths this rule can match; `top` stands for every length >= top (N <= 99 < top).
    top = max(MAX_LENGTH + 1, len(prefix))
    lengths = {
        n for n in range(len(prefix), top + 1) if all(c.holds(n) for c in conditions)
    }
    if not lengths:
        raise DialPlanError(
            f"the length conditions can never hold for a number starting with {prefix!r}",
            first_brace)

    target_base = base + colon + 1
    seen_star = False
    for j, ch in enumerate(target):
        if ch in LITERALS or ch in "$?":
            continue
        if ch == "*":
            if seen_star:
                raise DialPlanError("TARGET may contain only one '*'", target_base + j)
            seen_star = True
            continue
        raise DialPlanError(f"character {ch!r} is not allowed in TARGET", target_base + j)
    return Rule(prefix, star, tuple(conditions), target), lengths


def _parse_condition(original: str, i: int, base: int) -> tuple[LengthCondition, int]:
    """The ``{Xn}`` at ``original[i]``; returns it and the index after ``}``."""
    j = i + 1
    op = _OPS.get(original[j]) if j < len(original) else None
    if op is None:
        raise DialPlanError("length condition needs L, E, G or F after '{'", base + j)
    k = j + 1
    while k < len(original) and original[k] in _ASCII_DIGITS:
        k += 1
    digits = original[j + 1:k]
    if not digits:
        raise DialPlanError(f"length condition {op} needs a number", base + j + 1)
    if k >= len(original) or original[k] != "}":
        raise DialPlanError("length condition is not closed with '}'", base + k)
    if len(digits) > 1 and digits[0] == "0":
        raise DialPlanError("length condition number has a leading zero", base + j + 1)
    n = int(digits)
    if n > MAX_LENGTH:
        raise DialPlanError(f"length condition number is over {MAX_LENGTH}", base + j + 1)
    return LengthCondition(op, n), k + 1
