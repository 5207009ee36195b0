"""A writer batch as a few multi-row statements: the same rows, the same final state.

Why: the writer thread shares the interpreter lock with the event loop. SQLite releases
the lock around every statement it runs, and taking it back from a busy event loop can
wait a whole switch interval (5 ms). One statement per row (five per call) then caps the
writer near the loop's idle time: at about 80% of the engine's ceiling the queue grew
without end (docs/reliability.md). A batch run as one statement per kind of row takes
the lock back a handful of times, whatever its size.

A statement is merged only when registered here with its *space* (the rows it touches:
a table, or tables whose rows depend on each other), its *key* (the parameters naming
the row in that space) and its *phase*: the statements of one key are submitted in
phase order (a call's note, its answer, its removal; a CDR, then its attempts), so the
merged statements run phase by phase. Statements of different keys touch different
rows and commute; rows of one statement keep their submission order (CDR ids are
assigned in it). Where a key comes back to an earlier phase (a Call-ID used again) or
repeats a phase that is not repeatable, the batch is cut there and the part before it
runs first. Any statement not registered here runs alone, in its place, as a cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

Statement = tuple[str, Sequence[Any]]

# SQLite's default limit on a statement's parameters before 3.32 (999): any build
# takes the merged statements. Row counts are powers of two so that few distinct
# statements reach the connection's prepared-statement cache.
MAX_PARAMETERS = 999
MAX_ROWS = 128


@dataclass(frozen=True, slots=True)
class Rule:
    space: str
    key: tuple[int, ...]  # positions of the key's values in a row's parameters
    phase: int
    repeatable: bool  # several statements of one key may share the phase
    render: Callable[[int], str]  # the statement for n rows
    flatten: Callable[[list[Sequence[Any]]], list[Any]]  # their parameters
    max_rows: int


RULES: dict[str, Rule] = {}


def _chain(rows: list[Sequence[Any]]) -> list[Any]:
    return [value for row in rows for value in row]


def _register(sql: str, rule: Rule) -> str:
    if sql in RULES:
        raise ValueError(f"statement registered twice: {sql}")
    RULES[sql] = rule
    return sql


def _limit(per_row: int) -> int:
    rows = MAX_ROWS
    while rows > 1 and rows * per_row > MAX_PARAMETERS:
        rows //= 2
    return rows


_VALUES = re.compile(r"\bVALUES\s*\(")


def insert(sql: str, *, space: str, key: Sequence[int], phase: int,
           repeatable: bool = False) -> str:
    """Register an ``INSERT ... VALUES (...) [tail]`` of one row; its rows are merged
    into one ``VALUES (...), (...)``. Returns ``sql``."""
    found = _VALUES.search(sql)
    if found is None:
        raise ValueError(f"not an INSERT ... VALUES: {sql}")
    start = found.end() - 1
    depth = 0
    for end in range(start, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[end], 0)
        if depth == 0:
            break
    head, group, tail = sql[:start], sql[start:end + 1], sql[end + 1:]
    per_row = group.count("?")

    def render(n: int) -> str:
        return head + ", ".join([group] * n) + tail

    return _register(sql, Rule(space, tuple(key), phase, repeatable, render, _chain,
                               _limit(per_row)))


def delete(table: str, columns: Sequence[str], *, space: str, phase: int) -> str:
    """Register and return ``DELETE FROM table WHERE c1 = ? [AND c2 = ?]``, keyed by
    those columns; its rows are merged into one ``IN``."""
    sql = f"DELETE FROM {table} WHERE " + " AND ".join(f"{c} = ?" for c in columns)
    one = "(" + ", ".join("?" * len(columns)) + ")" if len(columns) > 1 else "?"
    target = columns[0] if len(columns) == 1 else "(" + ", ".join(columns) + ")"
    listed = "VALUES " if len(columns) > 1 else ""

    def render(n: int) -> str:
        return f"DELETE FROM {table} WHERE {target} IN ({listed}{', '.join([one] * n)})"

    return _register(sql, Rule(space, tuple(range(len(columns))), phase, True, render,
                               _chain, _limit(len(columns))))


def update(table: str, columns: str | tuple[str, ...], key: str, *, space: str,
           phase: int) -> str:
    """Register and return ``UPDATE table SET column = ?[, column = ?...] WHERE key = ?``;
    its rows are merged into one ``CASE`` over the keys per column. Not repeatable: one
    value per key."""
    names = (columns,) if isinstance(columns, str) else columns
    width = len(names)
    sql = f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in names)} WHERE {key} = ?"

    def render(n: int) -> str:
        cases = " ".join(["WHEN ? THEN ?"] * n)
        sets = ", ".join(f"{c} = CASE {key} {cases} END" for c in names)
        return f"UPDATE {table} SET {sets} WHERE {key} IN ({', '.join('?' * n)})"

    def flatten(rows: list[Sequence[Any]]) -> list[Any]:
        values = [v for i in range(width) for row in rows for v in (row[width], row[i])]
        values.extend(row[width] for row in rows)
        return values

    return _register(sql, Rule(space, (width,), phase, False, render, flatten,
                               _limit(2 * width + 1)))


def coalesce(statements: Sequence[Statement]) -> list[Statement]:
    """``statements`` (run in order in one transaction) as an equivalent, shorter list."""
    out: list[Statement] = []
    pending: dict[str, list[Sequence[Any]]] = {}
    last_phase: dict[tuple[str, tuple[Any, ...]], int] = {}
    for sql, params in statements:
        rule = RULES.get(sql)
        if rule is None:
            _emit(pending, out)
            last_phase.clear()
            out.append((sql, params))
            continue
        name = (rule.space, tuple(params[i] for i in rule.key))
        before = last_phase.get(name)
        if before is not None and (rule.phase < before
                                   or (rule.phase == before and not rule.repeatable)):
            _emit(pending, out)
            last_phase.clear()
        last_phase[name] = rule.phase
        rows = pending.get(sql)
        if rows is None:
            pending[sql] = [params]
        else:
            rows.append(params)
    _emit(pending, out)
    return out


@cache
def _rendered(rule: Rule, n: int) -> str:
    # One string object per statement and size: its hash is computed once, and the
    # connection's prepared-statement cache finds it at once.
    return rule.render(n)


def _emit(pending: dict[str, list[Sequence[Any]]], out: list[Statement]) -> None:
    for sql in sorted(pending, key=lambda s: RULES[s].phase):
        rows = pending[sql]
        rule = RULES[sql]
        while rows:
            if len(rows) == 1:
                out.append((sql, rows[0]))
                break
            n = rule.max_rows
            while n > len(rows):
                n //= 2
            chunk, rows = rows[:n], rows[n:]
            out.append((_rendered(rule, n), rule.flatten(chunk)))
    pending.clear()
