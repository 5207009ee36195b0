"""CDR rows, queued to the database writer so a slow disk never stalls signalling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from b2bua.storage.writer import DbWriter


@dataclass(slots=True)
class CdrRecord:
    call_id_in: str
    call_id_out: str | None
    caller: str
    callee: str
    source: str
    mapping_gateway_id: int | None
    mapping_gateway: str | None
    routing_gateway_id: int | None
    routing_gateway: str | None
    start_at: float
    ringing_at: float | None
    answer_at: float | None
    end_at: float
    duration: float
    final_code: int
    final_reason: str
    hangup_by: str
    termination_reason: str
    phone: str | None = None
    callee_phone: str | None = None
    caller_routed: str | None = None
    callee_routed: str | None = None
    caller_sent: str | None = None
    callee_sent: str | None = None
    origin_vendor: str | None = None
    media: str | None = None


_COLUMNS = tuple(CdrRecord.__dataclass_fields__)
# Every field is a str, number or None: a flat tuple of them is the row
# (dataclasses.astuple would deep-copy each value, a third of a call's CDR cost).
_ROW = attrgetter(*_COLUMNS)
INSERT = (
    f"INSERT INTO cdrs ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)


ATTEMPT_COLUMNS = ("seq", "routing_gateway_id", "routing_gateway", "call_id", "start_at",
                   "first_provisional_at", "first_provisional", "final_code", "outcome",
                   "duration", "target")
# The CDR's id is assigned by SQLite in the writer thread; its attempts, written in the
# same batch right after it, find it by the caller's Call-ID (indexed).
INSERT_ATTEMPT = (
    f"INSERT INTO cdr_attempts (cdr_id, {', '.join(ATTEMPT_COLUMNS)}) "
    "VALUES ((SELECT MAX(id) FROM cdrs WHERE call_id_in = ?), "
    f"{', '.join('?' for _ in ATTEMPT_COLUMNS)})"
)


class CdrWriter:
    def __init__(self, writer: DbWriter) -> None:
        self.writer = writer

    def submit(self, record: CdrRecord, attempts: Sequence[dict[str, Any]] = ()) -> None:
        self.writer.submit(INSERT, _ROW(record))
        for attempt in attempts:
            self.writer.submit(INSERT_ATTEMPT, (record.call_id_in,
                                                *(attempt[c] for c in ATTEMPT_COLUMNS)))
