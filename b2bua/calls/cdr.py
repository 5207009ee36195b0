"""CDR rows, queued to the database writer so a slow disk never stalls signalling."""

from __future__ import annotations

from dataclasses import astuple, dataclass

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


_COLUMNS = tuple(CdrRecord.__dataclass_fields__)
INSERT = (
    f"INSERT INTO cdrs ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)


class CdrWriter:
    def __init__(self, writer: DbWriter) -> None:
        self.writer = writer

    def submit(self, record: CdrRecord) -> None:
        self.writer.submit(INSERT, astuple(record))
