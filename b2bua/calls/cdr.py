"""CDR rows, queued to the database writer so a slow disk never stalls signalling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from b2bua.stats.tally import GatewayTally
from b2bua.storage import cdrs
from b2bua.storage.writer import DbWriter

if TYPE_CHECKING:
    from b2bua.webhooks.service import WebhookService


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
    # What the caller said of itself (the From display name, the User-Agent), shown to
    # operators as text, cut to a bound: anyone may put anything there.
    caller_name: str | None = None
    user_agent: str | None = None
    # The final code the caller was sent, when a failure-code map made it differ from
    # final_code (docs/carrier-controls.md); else the same.
    caller_code: int | None = None


_COLUMNS = tuple(CdrRecord.__dataclass_fields__)
_QUALITY = ("mapping_gateway_id", "mapping_gateway", "start_at", "ringing_at", "answer_at",
            "duration", "final_code")
_QUALITY_GET = attrgetter(*_QUALITY)


def _quality_fields(record: CdrRecord) -> dict[str, Any]:
    return dict(zip(_QUALITY, _QUALITY_GET(record), strict=True))

# Every field is a str, number or None: a flat tuple of them is the row
# (dataclasses.astuple would deep-copy each value, a third of a call's CDR cost).
_ROW = attrgetter(*_COLUMNS)
# A CdrRecord's fields in order as the row (crash recovery inserts with it too).
INSERT = cdrs.insert_statement(_COLUMNS)
ATTEMPT_COLUMNS = cdrs.ATTEMPT_COLUMNS


class CdrWriter:
    def __init__(self, writer: DbWriter, tally: GatewayTally | None = None) -> None:
        self.writer = writer
        self.tally = tally  # each gateway's quality since start (Prometheus)
        # The call events' webhooks (b2bua/webhooks/), set only while one wants them.
        self.events: WebhookService | None = None

    def submit(self, record: CdrRecord, attempts: Sequence[dict[str, Any]] = ()) -> None:
        self.writer.submit(INSERT, _ROW(record))
        if self.tally is not None:
            self.tally.add(_quality_fields(record), attempts)
        if record.cdr_uuid is None:  # a record from before CDRs had their uuid
            statement, key = cdrs.INSERT_ATTEMPT_BY_CALL_ID, record.call_id_in
        else:
            statement, key = cdrs.INSERT_ATTEMPT, record.cdr_uuid
        for attempt in attempts:
            self.writer.submit(statement, (key, *(attempt[c] for c in ATTEMPT_COLUMNS)))
        if self.events is not None:
            self.events.call_ended(record, attempts)
