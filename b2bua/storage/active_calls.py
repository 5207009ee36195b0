"""Calls in progress, noted in ``active_calls`` while they last so that a crash leaves
what recovery needs (b2bua/calls/recovery.py).

The notes go through the database writer with the CDR itself (the row is removed in the
batch that inserts the CDR), so a call never has both, and a crash leaves at most the
calls of the last few milliseconds without a row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

from b2bua.calls.cdr import INSERT, CdrRecord
from b2bua.storage import coalesce
from b2bua.storage.backend import Database
from b2bua.storage.writer import DbWriter

# A second note for the same Call-ID starts it afresh (not answered yet).
# A call's note, its answer and its removal, in that order (phases for the writer's
# multi-row batches, storage/coalesce.py).
_NOTE = coalesce.insert(
    "INSERT INTO active_calls (call_id_in, record, start_at, node) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (call_id_in) DO UPDATE SET record = excluded.record, "
    "start_at = excluded.start_at, answer_at = NULL, node = excluded.node",
    space="active_calls", key=(0,), phase=0)
_ANSWERED = coalesce.update("active_calls", ("answer_at", "dialogs"), "call_id_in",
                            space="active_calls", phase=1)
_DONE = coalesce.delete("active_calls", ("call_id_in",), space="active_calls", phase=2)

_FIELDS = tuple(f.name for f in fields(CdrRecord))
_encode = json.JSONEncoder(separators=(",", ":")).encode


def note_started(writer: DbWriter, record: CdrRecord) -> None:
    # Every field is a str, number or None: a flat dict, not dataclasses.asdict's deep
    # copy (which cost a tenth of the engine's CPU per call).
    flat = {name: getattr(record, name) for name in _FIELDS}
    writer.submit(_NOTE, (record.call_id_in, _encode(flat), record.start_at,
                          record.node or ""))


def note_answered(writer: DbWriter, call_id_in: str, at: float,
                  dialogs: Sequence[dict[str, Any]] = ()) -> None:
    """The call's answer, with both legs' dialogs (a node taking over ends them)."""
    writer.submit(_ANSWERED, (at, _encode(list(dialogs)) if dialogs else None, call_id_in))


def note_ended(writer: DbWriter, call_id_in: str) -> None:
    writer.submit(_DONE, (call_id_in,))


def left_behind(database: Database, node: str = ""
                ) -> list[tuple[dict[str, Any], float | None, list[dict[str, Any]]]]:
    """The calls ``node`` noted and did not end: each one's CDR fields as noted at its
    start, when it was answered (None: it was not), and its legs' dialogs then."""
    return [(json.loads(row["record"]), row["answer_at"],
             json.loads(row["dialogs"]) if row["dialogs"] else [])
            for row in database.rows("SELECT record, answer_at, dialogs FROM active_calls "
                                     "WHERE node = ?", (node,))]


def settle(database: Database, records: Sequence[CdrRecord], node: str = "") -> None:
    """Write the CDRs of ``node``'s calls left behind and forget their notes, in one
    transaction (a CDR written before is not written again: its ``cdr_uuid``)."""
    with database.transaction():
        database.order_commits("writer")  # ids in commit order (storage/cdrs.py)
        for record in records:
            database.execute(INSERT, tuple(asdict(record).values()))
            database.execute("DELETE FROM active_calls WHERE call_id_in = ? AND node = ?",
                             (record.call_id_in, node))
