"""CDRs exactly once, on SQLite and PostgreSQL: a CDR or attempt written twice is stored
once; recovery does not duplicate a CDR already written; and with two writers (two
engines) inserting while a billing client pages by id, every CDR is seen exactly once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.calls import recovery
from b2bua.calls.cdr import CdrRecord, CdrWriter
from b2bua.storage import active_calls, cdrs, migrate, open_database
from b2bua.storage.backend import Database
from b2bua.storage.cdrs import CdrFilter
from b2bua.storage.writer import DbWriter, spill_base

SPILL: dict[str, Path] = {}  # target -> where its writers save unwritten writes


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    sqlite = request.param == "sqlite"
    url = str(tmp_path / "s.db") if sqlite else str(request.getfixturevalue("pg_url"))
    with open_database(url) as database:
        migrate.migrate(database)
    SPILL[url] = spill_base(url, tmp_path)
    yield url
    SPILL.pop(url, None)


def _writer(target: str) -> DbWriter:
    writer = DbWriter(target, spill_to=SPILL[target])
    writer.start()
    return writer


def _record(n: int, cdr_uuid: str | None = None) -> CdrRecord:
    return CdrRecord(
        call_id_in=f"call-{n}", call_id_out=f"out-{n}", caller="100", callee="200",
        source="127.0.0.2:5060", mapping_gateway_id=None, mapping_gateway=None,
        routing_gateway_id=None, routing_gateway="vendor", start_at=1000.0 + n,
        ringing_at=None, answer_at=None, end_at=1001.0 + n, duration=0.0, final_code=486,
        final_reason="Busy Here", hangup_by="callee", termination_reason="vendor 486",
        cdr_uuid=cdr_uuid if cdr_uuid is not None else str(uuid.uuid4()))


def _attempt(seq: int) -> dict[str, object]:
    return {"seq": seq, "routing_gateway_id": None, "routing_gateway": "vendor",
            "call_id": f"leg-{seq}", "start_at": 1000.0, "first_provisional_at": None,
            "first_provisional": None, "final_code": 486, "outcome": "failed",
            "duration": 0.1, "target": "127.0.0.3:5060"}


def _count(database: Database, table: str) -> int:
    return int(database.value(f"SELECT COUNT(*) AS n FROM {table}"))


def test_a_cdr_and_its_attempts_written_twice_are_stored_once(target: str) -> None:
    writer = _writer(target)
    try:
        record = _record(1)
        for _ in range(2):  # a batch retried after its commit outcome was unknown
            CdrWriter(writer).submit(record, [_attempt(1), _attempt(2)])
        assert writer.flush(10)
    finally:
        writer.close()
    with open_database(target) as database:
        assert _count(database, "cdrs") == 1
        assert _count(database, "cdr_attempts") == 2
        row = database.row("SELECT * FROM cdrs")
        assert row is not None and row["cdr_uuid"] == record.cdr_uuid
        assert [a["seq"] for a in cdrs.attempts(database, int(row["id"]))] == [1, 2]


def _write(target: str, *records: CdrRecord, cdr: bool = False) -> None:
    writer = _writer(target)
    try:
        for record in records:
            active_calls.note_started(writer, record)
            if cdr:
                CdrWriter(writer).submit(record)
        assert writer.flush(10)
    finally:
        writer.close()


def test_recovery_of_a_call_whose_cdr_was_written_adds_nothing(target: str) -> None:
    # The CDR committed, and the note that should have gone with it is still there.
    written = _record(2)
    _write(target, written, cdr=True)
    with open_database(target) as database:
        assert _count(database, "active_calls") == 1
        assert recovery.recover(database, now=5000.0) == 1
        assert _count(database, "active_calls") == 0
        assert _count(database, "cdrs") == 1
        row = database.row("SELECT * FROM cdrs")
        assert row is not None and row["final_code"] == 486  # the real CDR, kept
        # A note without its CDR still becomes one.
        _write(target, _record(3))
        assert recovery.recover(database, now=5000.0) == 1
        assert _count(database, "cdrs") == 2


WRITERS = 2
PER_WRITER = 1500
DEADLINE_S = 60.0


def test_two_writers_and_a_paging_client_see_every_cdr_once(target: str) -> None:
    writers = [_writer(target) for _ in range(WRITERS)]
    done = threading.Event()
    seen: list[int] = []

    def page_all() -> None:
        after = 0
        with open_database(target) as reader:
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                rows = cdrs.page(reader, CdrFilter(), after, 50)
                seen.extend(int(r["id"]) for r in rows)
                if rows:
                    after = int(rows[-1]["id"])
                elif done.is_set():
                    # One more page after the writers' last commit, then stop.
                    rows = cdrs.page(reader, CdrFilter(), after, 1000)
                    seen.extend(int(r["id"]) for r in rows)
                    if not rows:
                        return
                    after = int(rows[-1]["id"])

    client = threading.Thread(target=page_all)
    client.start()
    try:
        # Interleaved submissions: each writer commits batches of several CDRs while the
        # other does, the case where ids could become visible out of order.
        for n in range(PER_WRITER):
            for k, w in enumerate(writers):
                CdrWriter(w).submit(_record(k * PER_WRITER + n), [_attempt(1)])
            if n % 100 == 0:
                time.sleep(0.005)
        for w in writers:
            assert w.flush(30)
    finally:
        for w in writers:
            w.close()
        done.set()
        client.join(DEADLINE_S + 5)
    assert not client.is_alive()
    with open_database(target) as database:
        stored = [int(r["id"]) for r in database.rows("SELECT id FROM cdrs ORDER BY id")]
    assert len(stored) == WRITERS * PER_WRITER
    assert len(seen) == len(set(seen)), "a CDR was returned twice"
    assert sorted(seen) == stored, f"{len(set(stored) - set(seen))} CDRs were skipped"
