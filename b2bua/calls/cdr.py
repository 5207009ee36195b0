"""CDR rows, queued to the database writer so a slow disk never stalls signalling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from b2bua.storage import cdrs
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
    # Given at the call's start and kept in its crash-recovery note: the CDR is inserted
    # once whatever retries or recoveries follow (docs/calls.md, CDRs exactly once).
    cdr_uuid: str | None = None
    node: str | None = None  # the node that carried the call (None: an unnamed switch)


_COLUMNS = tuple(CdrRecord.__dataclass_fields__)
# Every field is a str, number or None: a flat tuple of them is the row
# (dataclasses.astuple would deep-copy each value, a third of a call's CDR cost).
_ROW = attrgetter(*_COLUMNS)
# A CdrRecord's fields in order as the row (crash recovery inserts with it too).
INSERT = cdrs.insert_statement(_COLUMNS)
ATTEMPT_COLUMNS = cdrs.ATTEMPT_COLUMNS


class CdrWriter:
    def __init__(self, writer: DbWriter) -> None:
        self.writer = writer

    def submit(self, record: CdrRecord, attempts: Sequence[dict[str, Any]] = ()) -> None:
        self.writer.submit(INSERT, _ROW(record))
        if record.cdr_uuid is None:  # a record from before CDRs had their uuid
            statement, key = cdrs.INSERT_ATTEMPT_BY_CALL_ID, record.call_id_in
        else:
            statement, key = cdrs.INSERT_ATTEMPT, record.cdr_uuid
        for attempt in attempts:
            self.writer.submit(statement, (key, *(attempt[c] for c in ATTEMPT_COLUMNS)))
