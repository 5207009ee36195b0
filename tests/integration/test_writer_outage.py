"""The database private_pg going away under the engine's writer: writes wait, memory stays
bounded (the overflow goes to files), and once the private_pg is back everything is applied
once, in the order it was submitted."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pgserver
import pytest

from b2bua.calls.cdr import CdrRecord, CdrWriter
from b2bua.storage import migrate, open_database, writer
from b2bua.storage.writer import DbWriter, spill_base


def _cdr(n: int) -> CdrRecord:
    return CdrRecord(
        call_id_in=f"call-{n:05d}", call_id_out=None, caller="100", callee="200",
        source="127.0.0.2:5060", mapping_gateway_id=None, mapping_gateway=None,
        routing_gateway_id=None, routing_gateway=None, start_at=float(n), ringing_at=None,
        answer_at=None, end_at=float(n), duration=0.0, final_code=503,
        final_reason="Service Unavailable", hangup_by="system", termination_reason="test",
        cdr_uuid=str(uuid.uuid4()))


def test_writes_wait_out_an_outage_in_files_and_land_in_order(
        private_pg: pgserver.PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "MAX_PENDING", 40)
    url = pgserver.create_database(private_pg.admin_url)
    with open_database(url) as database:
        migrate.migrate(database)
    base = spill_base(url, tmp_path)
    db_writer = DbWriter(url, spill_to=base)
    db_writer.start()
    cdrs = CdrWriter(db_writer)
    submitted = 0
    try:
        for _ in range(20):
            cdrs.submit(_cdr(submitted))
            submitted += 1
        assert db_writer.flush(10)

        private_pg.stop()
        for _burst in range(3):  # the writer relieves its queue between its tries
            for _ in range(100):
                cdrs.submit(_cdr(submitted))
                submitted += 1
            time.sleep(2.5)
        state = db_writer.snapshot()
        assert state["waiting"] is True
        assert state["spilled"] >= 200 and state["spill_files"] >= 2
        assert db_writer.pending <= 40 + 100
        files = sorted(tmp_path.glob("database.unwritten-*.jsonl"))
        assert len(files) == state["spill_files"]

        private_pg.start()
        assert db_writer.flush(60), "the writes did not land once the private_pg was back"
        state = db_writer.snapshot()
        assert state["waiting"] is False and state["spill_files"] == 0
        assert state["failed"] == 0
        assert not list(tmp_path.glob("database.unwritten-*"))
    finally:
        db_writer.close()
    with open_database(url) as database:
        stored = [r["call_id_in"] for r in
                  database.rows("SELECT call_id_in FROM cdrs ORDER BY id")]
    # Each once, in the order the calls ended.
    assert stored == [f"call-{n:05d}" for n in range(submitted)]
