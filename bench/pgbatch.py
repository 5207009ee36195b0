"""The CDR writer's cost per call on PostgreSQL: a call's five writes (crash-recovery
note, answered, CDR, attempt, note removed), committed in batches as the engine's writer
does, one statement at a time (the interface's ``Database.commit_batch``) against the
PostgreSQL backend's, which sends the whole batch as one query. Prints this
process's CPU and the wall time per call for each; the server's own CPU is not counted
(it is another process).

    .venv/bin/python bench/pgbatch.py [CALLS]          # 2000 calls per way, ~1 min
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import pgserver  # noqa: E402

from b2bua.calls.cdr import CdrRecord, CdrWriter  # noqa: E402
from b2bua.storage import active_calls, open_database  # noqa: E402
from b2bua.storage.backend import Database, Params  # noqa: E402
from b2bua.storage.migrate import migrate  # noqa: E402

# The writer's largest batch (b2bua/storage/writer.py), and about what it commits every
# 20 ms at 500 calls/s.
BATCHES = (500, 50)
ROUNDS = 2

Statements = list[tuple[str, Params]]


class Collected:
    """Stands in for the engine's DbWriter: keeps what the call code submits."""

    def __init__(self) -> None:
        self.statements: Statements = []

    def submit(self, sql: str, params: Params) -> None:
        self.statements.append((sql, params))


def call_writes(tag: str, n: int) -> Statements:
    """What the engine submits for one answered call, through its own code."""
    record = CdrRecord(
        call_id_in=f"{tag}-{n}", call_id_out=f"out-{tag}-{n}", caller="100", callee="200",
        source="127.0.0.2:5060", mapping_gateway_id=None, mapping_gateway="customer",
        routing_gateway_id=None, routing_gateway="vendor", start_at=1000.0 + n,
        ringing_at=1000.2, answer_at=1000.5, end_at=1001.0 + n, duration=0.5,
        final_code=200, final_reason="OK", hangup_by="caller",
        termination_reason="caller hung up", cdr_uuid=str(uuid.uuid4()))
    attempt = {"seq": 1, "routing_gateway_id": None, "routing_gateway": "vendor",
               "call_id": f"leg-{tag}-{n}", "start_at": 1000.0, "first_provisional_at":
               1000.2, "first_provisional": 180, "final_code": 200, "outcome": "answered",
               "duration": 0.5, "target": "127.0.0.3:5060"}
    writer: Any = Collected()
    active_calls.note_started(writer, record)
    active_calls.note_answered(writer, record.call_id_in, 1000.5)
    CdrWriter(writer).submit(record, [attempt])
    active_calls.note_ended(writer, record.call_id_in)
    return list(writer.statements)


def one_by_one(db: Database, batch: Statements) -> None:
    Database.commit_batch(db, batch, "writer")  # the interface's: a statement at a time


def one_query(db: Database, batch: Statements) -> None:
    db.commit_batch(batch, "writer")  # PostgreSQL's: the batch as one query


def measure(db: Database, name: str, way: Callable[[Database, Statements], None],
            calls: int, batch: int, tag: str) -> None:
    writes = [w for n in range(calls) for w in call_writes(tag, n)]
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(writes), batch):
        way(db, writes[start:start + batch])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{name:<10} batch {batch:3d}  {1e6 * cpu / calls:6.1f} us CPU/call  "
          f"{1e6 * wall / calls:6.1f} us wall/call", flush=True)


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    server = pgserver.PgServer().start()
    try:
        with open_database(pgserver.create_database(server.admin_url)) as db:
            migrate(db)
            for round_ in range(ROUNDS):
                for batch in BATCHES:
                    measure(db, "one by one", one_by_one, calls, batch, f"e{round_}-{batch}")
                    measure(db, "one query", one_query, calls, batch, f"q{round_}-{batch}")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
