"""CDR rows, written by a background thread so a slow disk never stalls signalling.

Rows are queued by the event loop and inserted in batches (one transaction per
batch). ``close`` drains the queue, so a graceful stop loses none.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from b2bua.storage import db

log = logging.getLogger("b2bua.cdr")

BATCH = 500


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


_COLUMNS = tuple(CdrRecord.__dataclass_fields__)
_INSERT = (
    f"INSERT INTO cdrs ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)


class CdrWriter:
    def __init__(self, db_path: Path) -> None:
        self._queue: queue.SimpleQueue[CdrRecord | None] = queue.SimpleQueue()
        self._db_path = db_path
        self._thread = threading.Thread(target=self._run, name="cdr-writer", daemon=True)
        self.written = 0
        self.failed = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: CdrRecord) -> None:
        self._queue.put(record)

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        conn = db.connect(self._db_path)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                self._write(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[CdrRecord]) -> None:
        rows = [tuple(asdict(r)[c] for c in _COLUMNS) for r in batch]
        for attempt in range(5):
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
                self.written += len(rows)
                return
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                log.warning("cdr write failed (attempt %d): %s", attempt + 1, exc)
        self.failed += len(rows)
        log.error("dropped %d CDRs after repeated write failures", len(rows))
