"""Gateway quality sums per minute, hour and day (``gateway_stats``), the roll-up's
cursor over the CDRs (``stats_progress``), and the reads behind
``GET /api/v1/stats/gateways``.

The roll-up reads CDRs by id after its cursor. CDR ids commit in increasing order
(``storage/cdrs.py``), so a cursor never passes a CDR that commits later: every CDR is
counted once, and the cells and the cursor move in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from b2bua.stats.quality import Cell, CellKey
from b2bua.storage.backend import Database, Row

PROGRESS = "gateway_stats"
_CALL_COLUMNS = ("id, mapping_gateway_id, mapping_gateway, routing_gateway_id, "
                 "routing_gateway, start_at, ringing_at, answer_at, duration, final_code")
_ATTEMPT_COLUMNS = ("cdr_id, seq, routing_gateway_id, routing_gateway, start_at, "
                    "first_provisional_at, final_code, outcome, duration")


def cursor(database: Database) -> int:
    value = database.value("SELECT last_id FROM stats_progress WHERE name = ?", (PROGRESS,))
    return int(value or 0)


def calls_after(database: Database, after_id: int, limit: int
                ) -> list[tuple[Row, list[Row]]]:
    """Up to ``limit`` CDRs after ``after_id`` in id order, each with its attempts."""
    calls = database.rows(f"SELECT {_CALL_COLUMNS} FROM cdrs WHERE id > ? ORDER BY id "
                          "LIMIT ?", (after_id, limit))
    if not calls:
        return []
    attempts: dict[int, list[Row]] = {}
    for row in database.rows(
            f"SELECT {_ATTEMPT_COLUMNS} FROM cdr_attempts WHERE cdr_id > ? AND cdr_id <= ? "
            "ORDER BY cdr_id, seq", (after_id, int(calls[-1]["id"]))):
        attempts.setdefault(int(row["cdr_id"]), []).append(row)
    return [(call, attempts.get(int(call["id"]), [])) for call in calls]


def _row_cell(row: Row) -> Cell:
    return Cell.from_json({"attempts": row["attempts"], "answered": row["answered"],
                           "ner": row["ner"], "talk": row["talk"],
                           "pdd_seconds": row["pdd_seconds"],
                           "pdd": json.loads(row["pdd"]),
                           "failures": json.loads(row["failures"])})


_UPSERT = (
    "INSERT INTO gateway_stats (kind, gateway_id, step, period_at, attempts, answered, ner, "
    "talk, pdd_seconds, pdd, failures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (kind, gateway_id, step, period_at) DO UPDATE SET "
    "attempts = excluded.attempts, answered = excluded.answered, ner = excluded.ner, "
    "talk = excluded.talk, pdd_seconds = excluded.pdd_seconds, pdd = excluded.pdd, "
    "failures = excluded.failures")


def add_cells(database: Database, cells: Mapping[CellKey, Cell], last_id: int) -> None:
    """Add ``cells`` to the stored ones and move the cursor to ``last_id``, at once."""
    with database.transaction():
        for key, cell in cells.items():
            stored = database.row(
                "SELECT attempts, answered, ner, talk, pdd_seconds, pdd, failures "
                "FROM gateway_stats "
                "WHERE kind = ? AND gateway_id = ? AND step = ? AND period_at = ?", key)
            total = _row_cell(stored) if stored is not None else Cell()
            total.merge(cell)
            data = total.to_json()
            database.execute(_UPSERT, (*key, total.attempts, total.answered, total.ner,
                                       total.talk, total.pdd_seconds, json.dumps(data["pdd"]),
                                       json.dumps(data["failures"])))
        database.execute(
            "INSERT INTO stats_progress (name, last_id) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id",
            (PROGRESS, last_id))


def prune(database: Database, keep: Iterable[tuple[int, float]]) -> int:
    """Delete each step's periods that started before its limit; rows deleted."""
    deleted = 0
    for step, before in keep:
        deleted += database.execute(
            "DELETE FROM gateway_stats WHERE step = ? AND period_at < ?", (step, before))
    return deleted


def cells(database: Database, step: int, since: float, until: float, kind: str | None,
          gateway_id: int | None) -> list[tuple[CellKey, Cell]]:
    """The stored cells of ``step`` whose period starts in ``[since, until)``."""
    where = ["step = ?", "period_at >= ?", "period_at < ?"]
    args: list[Any] = [step, since, until]
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    if gateway_id is not None:
        where.append("gateway_id = ?")
        args.append(gateway_id)
    rows = database.rows(
        "SELECT kind, gateway_id, step, period_at, attempts, answered, ner, talk, "
        f"pdd_seconds, pdd, failures FROM gateway_stats WHERE {' AND '.join(where)} "
        "ORDER BY kind, gateway_id, period_at", args)
    return [((str(r["kind"]), int(r["gateway_id"]), int(r["step"]), int(r["period_at"])),
             _row_cell(r)) for r in rows]


def gateway_names(database: Database) -> dict[tuple[str, int], str]:
    """The gateways' names now, by (kind, id)."""
    names: dict[tuple[str, int], str] = {}
    for kind, table in (("mapping", "mapping_gateways"), ("routing", "routing_gateways")):
        for row in database.rows(f"SELECT id, name FROM {table}"):
            names[(kind, int(row["id"]))] = str(row["name"])
    return names
