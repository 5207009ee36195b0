"""An operator's connection holding the SQLite database does not stall call processing.

The engine queues its writes (CDRs, active-call notes) to a background thread, so while
another connection holds the write lock, or runs a long read, calls are set up and torn
down at full speed; once the lock is released every CDR is written, exactly once.
"""

from __future__ import annotations

import csv
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sippctl import CUSTOMER_IP, VENDOR_IP, Sipp, sipp
from support import Softswitch, free_port, wait_until

from b2bua.storage import db
from b2bua.storage.backend import BusyError
from b2bua.storage.sqlite import SqliteDatabase
from b2bua.storage.writer import DbWriter, replay, spill

CALLS = 30
RATE = 15  # calls/s: the batch takes ~2 s, well inside the lock
HOLD_MS = 300
LOCK_S = 9.0  # longer than the engine's busy timeout (5 s): its writer has to retry
READ_S = 6.0


def _configure(switch: Softswitch) -> int:
    api = switch.api
    vendor_port = free_port(VENDOR_IP)
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                          "port": vendor_port})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=5)
    return vendor_port


def _place_calls(switch: Softswitch, workdir: Path, vendor_port: int) -> tuple[Sipp, Sipp]:
    vendor = sipp("uas_answer.xml", workdir, VENDOR_IP, vendor_port, calls=CALLS)
    caller = sipp("uac_call.xml", workdir, CUSTOMER_IP, free_port(CUSTOMER_IP),
                  f"127.0.0.1:{switch.sip_port}", calls=CALLS, rate=RATE, hold_ms=HOLD_MS)
    return caller, vendor


def _sipp_totals(run: Sipp) -> dict[str, int]:
    with (run.workdir / "stats.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter=";") if r.get("StartTime")]
    last = rows[-1]
    return {k: int(last[f"{k}(C)"]) for k in ("SuccessfulCall", "FailedCall",
                                              "Retransmissions")}


def _assert_clean(caller: Sipp, vendor: Sipp, timeout: float) -> None:
    assert caller.wait(timeout) == 0, caller.output()
    assert vendor.wait(10) == 0, vendor.output()
    for run in (caller, vendor):
        totals = _sipp_totals(run)
        # A stalled engine shows first as retransmitted INVITEs or 200s (T1 = 500 ms).
        assert totals == {"SuccessfulCall": CALLS, "FailedCall": 0, "Retransmissions": 0}, (
            run.name, totals)


def _cdr_counts(db_path: Path) -> tuple[int, int, int]:
    """(CDR rows, distinct caller Call-IDs, active-call notes) read by a separate reader."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT call_id_in) FROM cdrs").fetchone()
        active = conn.execute("SELECT count(*) FROM active_calls").fetchone()[0]
        return int(rows), int(distinct), int(active)
    finally:
        conn.close()


def test_exclusive_lock_does_not_stall_calls_and_loses_no_cdr(tmp_path: Path,
                                                             softswitch: Softswitch) -> None:
    vendor_port = _configure(softswitch)
    db_path = softswitch.db_path
    assert _cdr_counts(db_path) == (0, 0, 0)
    operator = sqlite3.connect(db_path, timeout=1, isolation_level=None)
    operator.execute("BEGIN EXCLUSIVE")
    locked_at = time.monotonic()
    try:
        caller, vendor = _place_calls(softswitch, tmp_path, vendor_port)
        _assert_clean(caller, vendor, timeout=LOCK_S)
        calls_done = time.monotonic() - locked_at
        assert wait_until(lambda: softswitch.api.get("/api/v1/calls")["items"] == [],
                          timeout=2)
        # Still locked: the calls completed without a single CDR reaching the database,
        # so the writes really were held back, and signalling did not wait for them.
        assert time.monotonic() - locked_at < LOCK_S, calls_done
        assert _cdr_counts(db_path) == (0, 0, 0)
        time.sleep(max(0.0, LOCK_S - (time.monotonic() - locked_at)))
    finally:
        operator.execute("ROLLBACK")
        operator.close()
    assert wait_until(lambda: _cdr_counts(db_path)[0] >= CALLS, timeout=15), \
        _cdr_counts(db_path)
    time.sleep(1.0)  # a duplicate written by a retried batch would show by now
    assert _cdr_counts(db_path) == (CALLS, CALLS, 0)
    cdrs = softswitch.api.get("/api/v1/cdrs?limit=100")["items"]
    assert len(cdrs) == CALLS
    assert all(c["final_code"] == 200 and c["termination_reason"] == "caller BYE"
               for c in cdrs)
    log = softswitch.log()
    # The writer waited out the lock (at least one busy timeout) and dropped nothing.
    assert "database locked by another connection" in log
    assert "database write failed" not in log and "after repeated failures" not in log


def test_long_read_query_does_not_hold_back_calls_or_cdrs(tmp_path: Path,
                                                         softswitch: Softswitch) -> None:
    vendor_port = _configure(softswitch)
    db_path = softswitch.db_path
    reader = sqlite3.connect(db_path, timeout=1, isolation_level=None,
                             check_same_thread=False)

    def pause(seconds: float) -> int:
        time.sleep(seconds)
        return 0

    # A query that runs for READ_S inside SQLite, holding its read snapshot throughout.
    reader.create_function("pause", 1, pause)
    started = threading.Event()
    seen: list[int] = []

    def long_read() -> None:
        started.set()
        row = reader.execute(
            "WITH RECURSIVE t(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM t WHERE i < ?) "
            "SELECT (SELECT count(*) FROM cdrs), sum(pause(?)) FROM t",
            (int(READ_S / 0.25), 0.25)).fetchone()
        seen.append(int(row[0]))

    query = threading.Thread(target=long_read, daemon=True)
    query.start()
    assert started.wait(2)
    t0 = time.monotonic()
    try:
        caller, vendor = _place_calls(softswitch, tmp_path, vendor_port)
        _assert_clean(caller, vendor, timeout=READ_S)
        # In WAL mode a reader blocks no writer: every CDR is in while the query runs.
        assert wait_until(lambda: _cdr_counts(db_path)[0] >= CALLS, timeout=3)
        assert query.is_alive(), "the read query ended before the calls: lengthen it"
        assert time.monotonic() - t0 < READ_S
    finally:
        query.join(READ_S + 5)
        reader.close()
    assert seen == [0]  # its snapshot predates every CDR: it really was one long read
    assert _cdr_counts(db_path) == (CALLS, CALLS, 0)
    assert "database locked" not in softswitch.log()


def _writer_and_operator(tmp_path: Path, columns: str) -> tuple[Path, DbWriter,
                                                                  sqlite3.Connection]:
    """A table ``rows`` with ``columns``, the engine's writer on it (started), and an
    operator's connection to hold locks with."""
    path = tmp_path / "writer.db"
    setup = db.connect(path)
    setup.execute(f"CREATE TABLE rows ({columns})")
    setup.close()
    writer = DbWriter(path)
    writer.start()
    return path, writer, sqlite3.connect(path, timeout=1, isolation_level=None)


def test_writer_outlasts_a_lock_longer_than_all_its_retries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's writer against a lock held 40 busy timeouts (it used to give up after
    five, dropping the batch: CDRs lost). Scaled down: 50 ms busy timeout, 2 s lock."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)
    _, writer, operator = _writer_and_operator(tmp_path, "k INTEGER NOT NULL")
    try:
        operator.execute("BEGIN EXCLUSIVE")
        for k in range(50):
            writer.submit("INSERT INTO rows (k) VALUES (?)", (k,))
        time.sleep(1.0)
        for k in range(50, 100):  # queued behind the blocked batch
            writer.submit("INSERT INTO rows (k) VALUES (?)", (k,))
        time.sleep(1.0)
        assert operator.execute("SELECT count(*) FROM rows").fetchone()[0] == 0
        assert writer.written == writer.failed == 0
        # The backlog is visible (GET /api/v1/engine "db_writer", the metrics): at least
        # the second fifty wait in the queue behind the blocked batch.
        snapshot = writer.snapshot()
        assert 50 <= snapshot["pending"] <= 100 and snapshot["written"] == 0
        operator.execute("ROLLBACK")
        assert writer.flush(5)
        assert writer.pending == 0
        total, distinct = operator.execute(
            "SELECT count(*), count(DISTINCT k) FROM rows").fetchone()
        assert (total, distinct, writer.written, writer.failed) == (100, 100, 100, 0)
    finally:
        operator.close()
        writer.close()


def test_writes_a_locked_stop_cannot_apply_are_saved_and_applied_at_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database still locked when the writer stops: nothing queued is lost. The writes
    go, in order, to a file beside the database, which ``replay`` (run by the engine at
    start) applies once and removes."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)
    path, writer, operator = _writer_and_operator(tmp_path, "k INTEGER NOT NULL, v TEXT")
    try:
        operator.execute("BEGIN EXCLUSIVE")
        for k in range(30):
            writer.submit("INSERT INTO rows (k, v) VALUES (?, ?)", (k, f"cdr {k}"))
        time.sleep(0.3)  # the first batch is blocked in the thread, the rest queued
        for k in range(30, 60):
            writer.submit("INSERT INTO rows (k, v) VALUES (?, ?)", (k, None))
        saved = writer.close(timeout=0.5)
        assert saved is not None and saved.parent == tmp_path
        assert len(saved.read_text().splitlines()) == 60
        assert writer.written == 0
    finally:
        operator.execute("ROLLBACK")
        operator.close()
    with SqliteDatabase(path) as database:
        assert replay(database, path) == 60
        rows = database.rows("SELECT k, v FROM rows ORDER BY rowid")
        assert [(r["k"], r["v"]) for r in rows] == [(k, f"cdr {k}" if k < 30 else None)
                                                    for k in range(60)]
        assert not saved.exists()
        assert replay(database, path) == 0  # applied once


def test_a_stop_with_nothing_left_saves_nothing(tmp_path: Path) -> None:
    _, writer, operator = _writer_and_operator(tmp_path, "k INTEGER NOT NULL")
    operator.close()
    writer.submit("INSERT INTO rows (k) VALUES (?)", (1,))
    assert writer.close() is None
    assert not list(tmp_path.glob("*.unwritten-*"))


def test_engine_stopped_while_locked_loses_no_cdr(tmp_path: Path) -> None:
    """The engine is stopped (SIGTERM) while an operator still holds the lock: its
    writer gives up waiting after 10 s and saves the queued writes; the next start
    applies them before recovery, so every call has its CDR, once, and none is taken
    for a call interrupted by the stop."""
    switch = Softswitch(tmp_path).start()
    db_path = switch.db_path
    operator = sqlite3.connect(db_path, timeout=1, isolation_level=None)
    locked = False
    try:
        vendor_port = _configure(switch)
        operator.execute("BEGIN EXCLUSIVE")
        locked = True
        vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port, calls=5)
        caller = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                      f"127.0.0.1:{switch.sip_port}", calls=5, rate=10, hold_ms=100)
        assert caller.wait(10) == 0, caller.output()
        assert vendor.wait(10) == 0, vendor.output()
        assert switch.stop(timeout=40) == 0, switch.log()[-3000:]
        saved = list(db_path.parent.glob(f"{db_path.name}.unwritten-*.jsonl"))
        assert len(saved) == 1, switch.log()[-3000:]
        assert "writes saved to" in switch.log()
    finally:
        if locked:
            operator.execute("ROLLBACK")
        operator.close()
        switch.stop()
    again = Softswitch(tmp_path, sip_port=switch.sip_port).start()
    try:
        assert not saved[0].exists()
        rows = again.api.get("/api/v1/cdrs")["items"]
        assert len(rows) == 5 and len({r["call_id_in"] for r in rows}) == 5
        assert {r["termination_reason"] for r in rows} == {"caller BYE"}, rows
        assert _cdr_counts(db_path) == (5, 5, 0)
    finally:
        assert again.stop() == 0


def test_a_save_that_cannot_be_written_is_logged_not_raised(tmp_path: Path) -> None:
    """A full or read-only disk at a locked stop: the stop still completes."""
    assert spill(tmp_path / "gone" / "softswitch.db", [("INSERT INTO rows VALUES (?)",
                                                         (1,))]) is None


def test_a_saved_file_that_cannot_be_applied_is_set_aside(tmp_path: Path) -> None:
    """A damaged file (or one the schema refuses) is renamed ``.rejected`` and the next
    one is still applied; a database still locked stops the start instead."""
    path, writer, operator = _writer_and_operator(tmp_path, "k INTEGER NOT NULL")
    writer.close()
    bad = path.with_name(f"{path.name}.unwritten-1.000000.jsonl")
    bad.write_text('["INSERT INTO rows (k) VALUES (?)", [null]]\n')  # NOT NULL refuses it
    good = path.with_name(f"{path.name}.unwritten-2.000000.jsonl")
    good.write_text('["INSERT INTO rows (k) VALUES (?)", [7]]\n')
    database = SqliteDatabase(path)
    try:
        assert replay(database, path) == 1
        assert not bad.exists() and bad.with_name(bad.name + ".rejected").exists()
        assert not good.exists()
        assert [r["k"] for r in database.rows("SELECT k FROM rows")] == [7]
        good.write_text('["INSERT INTO rows (k) VALUES (?)", [8]]\n')
        operator.execute("BEGIN EXCLUSIVE")
        database.connection.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(BusyError):
            replay(database, path)
        assert good.exists()
    finally:
        operator.execute("ROLLBACK")
        operator.close()
        database.close()
