"""CDRs and their attempts: the statements the engine's writer runs, and the reads.

A CDR's id is assigned when an engine's writer inserts the row, once the call has
ended; the row is never updated after. Every transaction that inserts CDRs (each
engine's writer, crash recovery) first calls ``Database.order_commits("writer")``, so
even several engines sharing one PostgreSQL commit ids in increasing order: paging by id
(``id > after``) never returns a CDR twice and never skips one committed late. Each CDR
has the ``cdr_uuid`` its call was given at the start; inserting it again (a retried
batch, a recovery after a crash that came just after the commit) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from b2bua.storage import coalesce, open_database
from b2bua.storage.backend import Database, Row
from b2bua.storage.identifiers import column_list, placeholders

# -- writes (queued to the engine's writer) --------------------------------------------------


@cache
def insert_statement(columns: tuple[str, ...]) -> str:
    """The statement inserting one CDR whose values come in ``columns``' order (with
    ``cdr_uuid`` among them); then its attempts (phases for the writer's multi-row
    batches, storage/coalesce.py)."""
    return coalesce.insert(
        f"INSERT INTO cdrs ({column_list(columns)}) VALUES ({placeholders(len(columns))}) "
        "ON CONFLICT (cdr_uuid) DO NOTHING",
        space="cdrs", key=(columns.index("cdr_uuid"),), phase=0)


ATTEMPT_COLUMNS = ("seq", "routing_gateway_id", "routing_gateway", "call_id", "start_at",
                   "first_provisional_at", "first_provisional", "final_code", "outcome",
                   "duration", "target")
# The CDR's id is assigned in the writer thread; its attempts, written in the same batch
# right after it, find it by its cdr_uuid. Parameters: that uuid, then ATTEMPT_COLUMNS'
# values. An attempt written again (a retried batch) changes nothing.
_ATTEMPT_VALUES = f"{column_list(ATTEMPT_COLUMNS)}) VALUES ("
INSERT_ATTEMPT = coalesce.insert(
    f"INSERT INTO cdr_attempts (cdr_id, {_ATTEMPT_VALUES}"
    "(SELECT id FROM cdrs WHERE cdr_uuid = ?), "
    f"{placeholders(len(ATTEMPT_COLUMNS))}) ON CONFLICT (cdr_id, seq) DO NOTHING",
    space="cdrs", key=(0,), phase=1, repeatable=True)
# A CDR without a uuid (recorded by an older release): its attempts by the caller's
# Call-ID (indexed), the newest CDR of that Call-ID.
INSERT_ATTEMPT_BY_CALL_ID = (
    f"INSERT INTO cdr_attempts (cdr_id, {_ATTEMPT_VALUES}"
    "(SELECT MAX(id) FROM cdrs WHERE call_id_in = ?), "
    f"{placeholders(len(ATTEMPT_COLUMNS))}) ON CONFLICT (cdr_id, seq) DO NOTHING"
)

# -- reads -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CdrFilter:
    """Conditions on CDRs, every one given must hold: ``since <= start_at < until``, the
    gateways' ids, the caller and callee as received (exact, or a prefix), the final code
    and the termination reason (exact)."""

    since: float | None = None
    until: float | None = None
    mapping_gateway_id: int | None = None
    routing_gateway_id: int | None = None
    caller: str | None = None
    caller_prefix: bool = False
    callee: str | None = None
    callee_prefix: bool = False
    final_code: int | None = None
    termination_reason: str | None = None

    def where(self) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if self.since is not None:
            where.append("start_at >= ?")
            args.append(self.since)
        if self.until is not None:
            where.append("start_at < ?")
            args.append(self.until)
        if self.mapping_gateway_id is not None:
            where.append("mapping_gateway_id = ?")
            args.append(self.mapping_gateway_id)
        if self.routing_gateway_id is not None:
            where.append("routing_gateway_id = ?")
            args.append(self.routing_gateway_id)
        if self.final_code is not None:
            where.append("final_code = ?")
            args.append(self.final_code)
        if self.termination_reason is not None:
            where.append("termination_reason = ?")
            args.append(self.termination_reason)
        for column, value, prefix in (("caller", self.caller, self.caller_prefix),
                                      ("callee", self.callee, self.callee_prefix)):
            if value is None:
                continue
            if prefix:
                # Compared as text: LIKE would treat % and _ in a number as wildcards.
                where.append(f"substr({column}, 1, CAST(? AS INTEGER)) = ?")
                args.extend((len(value), value))
            else:
                where.append(f"{column} = ?")
                args.append(value)
        return where, args


def _conditions(where: list[str]) -> str:
    return " AND ".join(where) if where else "TRUE"


def page(db: Database, match: CdrFilter, after_id: int, limit: int) -> list[Row]:
    """Up to ``limit`` matching CDRs with an id above ``after_id``, in id order."""
    where, args = match.where()
    return db.rows(
        f"SELECT * FROM cdrs WHERE {_conditions(['id > ?', *where])} ORDER BY id LIMIT ?",
        (after_id, *args, limit))


def newest(db: Database, match: CdrFilter, count: int) -> list[Row]:
    """The ``count`` newest matching CDRs, in id order."""
    where, args = match.where()
    return db.rows(
        f"SELECT * FROM (SELECT * FROM cdrs WHERE {_conditions(where)} "
        "ORDER BY id DESC LIMIT ?) AS newest ORDER BY id", (*args, count))


def get(db: Database, cdr_id: int) -> Row | None:
    return db.row("SELECT * FROM cdrs WHERE id = ?", (cdr_id,))


def attempts(db: Database, cdr_id: int) -> list[Row]:
    """The CDR's attempts, in the order they were made."""
    return db.rows("SELECT * FROM cdr_attempts WHERE cdr_id = ? ORDER BY seq", (cdr_id,))


def export_end(db: Database, match: CdrFilter, after_id: int, limit: int) -> tuple[int, bool]:
    """Where an export of up to ``limit`` matching CDRs after ``after_id`` ends: the last
    id it covers, and whether more matching CDRs follow.

    The end is fixed before the rows are read, so the rows and the cursor handed on agree
    even while the engine keeps inserting: ids at or below the newest one are never added
    later.
    """
    newest_id = int(db.value("SELECT COALESCE(MAX(id), 0) AS newest FROM cdrs"))
    where, args = match.where()
    ahead = db.rows(
        f"SELECT id FROM cdrs WHERE {_conditions(['id > ?', 'id <= ?', *where])} "
        "ORDER BY id LIMIT 2 OFFSET ?", (after_id, newest_id, *args, limit - 1))
    if len(ahead) == 2:
        return int(ahead[0]["id"]), True
    return newest_id, False


EXPORT_CHUNK = 500


def export_rows(target: str | Path, columns: Sequence[str], match: CdrFilter, after_id: int,
                last_id: int, limit: int) -> Iterator[list[tuple[Any, ...]]]:
    """The matching CDRs with ids in ``(after_id, last_id]``, at most ``limit``, as tuples
    of ``columns``, in chunks; read on a read-only connection of their own, opened at the
    first chunk and closed after the last, so a long export holds no request's connection.
    """
    where, args = match.where()
    selected = columns if "id" in columns else ("id", *columns)
    sql = (f"SELECT {column_list(selected)} FROM cdrs "
           f"WHERE {_conditions(['id > ?', 'id <= ?', *where])} ORDER BY id LIMIT ?")
    left = limit
    with open_database(target, readonly=True) as db:
        # Chunk by id, one short statement each: no read stays open for the whole export.
        while left > 0:
            rows = db.rows(sql, (after_id, last_id, *args, min(left, EXPORT_CHUNK)))
            if not rows:
                return
            yield [tuple(r[c] for c in columns) for r in rows]
            after_id = int(rows[-1]["id"])
            left -= len(rows)
