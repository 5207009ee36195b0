"""The writer's multi-row batches (b2bua/storage/coalesce.py) leave the database exactly
as the same statements run one by one would: every table, row ids included."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.calls.cdr import INSERT, CdrRecord
from b2bua.storage import active_calls, coalesce, migrate, open_database, registrations
from b2bua.storage.backend import Database, StorageError
from b2bua.storage.cdrs import ATTEMPT_COLUMNS, INSERT_ATTEMPT
from b2bua.storage.sqlite import SqliteDatabase

Statement = tuple[str, Sequence[Any]]
CALLS = ("a@h", "b@h", "c@h")
COLUMNS = tuple(CdrRecord.__dataclass_fields__)


def _cdr(call: str, version: int) -> tuple[Any, ...]:
    record = CdrRecord(call_id_in=call, call_id_out=None, caller="1", callee="2",
                       source="192.0.2.1:5060", mapping_gateway_id=None,
                       mapping_gateway=None, routing_gateway_id=None, routing_gateway=None,
                       start_at=1.0, ringing_at=None, answer_at=None, end_at=2.0 + version,
                       duration=0.0, final_code=486, final_reason="Busy Here",
                       hangup_by="callee", termination_reason="busy",
                       cdr_uuid=f"uuid-{call}")
    return tuple(getattr(record, c) for c in COLUMNS)


def _attempt(call: str, seq: int, version: int) -> tuple[Any, ...]:
    values = {c: None for c in ATTEMPT_COLUMNS}
    values.update(seq=seq, start_at=1.0 + version, outcome="busy", final_code=486)
    return (f"uuid-{call}", *(values[c] for c in ATTEMPT_COLUMNS))


calls = st.sampled_from(CALLS)
versions = st.integers(0, 3)
statement = st.one_of(
    st.builds(lambda c, v: (active_calls._NOTE, (c, f'{{"v":{v}}}', float(v), f"n{v % 2}")),
              calls, versions),
    st.builds(lambda c, v: (active_calls._ANSWERED, (float(v), f'[{{"d":{v}}}]' if v else None,
                                                     c)), calls, versions),
    st.builds(lambda c: (active_calls._DONE, (c,)), calls),
    st.builds(lambda c, v: (INSERT, _cdr(c, v)), calls, versions),
    st.builds(lambda c, s, v: (INSERT_ATTEMPT, _attempt(c, s, v)), calls, st.integers(1, 3),
              versions),
    st.builds(lambda u, v: (registrations._UPSERT,
                            (u, "sip:x@192.0.2.9", "udp", "192.0.2.9", 5060, 0, 100.0 + v,
                             1.0, "ua", "cid", "", None, f"udp:198.18.0.{v}:5060" if v
                             else None)), st.sampled_from(("u1", "u2")),
              versions),
    st.builds(lambda u: (registrations._DELETE, (u, "sip:x@192.0.2.9")),
              st.sampled_from(("u1", "u2"))),
    st.builds(lambda v: (registrations._PURGE, (100.0 + v,)), versions),  # not merged
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("coalesce") / "template.db"
    database = open_database(path)
    migrate.migrate(database)
    database.close()
    return path


def _copy(template: Path, name: str) -> Iterator[SqliteDatabase]:
    path = template.with_name(name)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(template, path)
    database = open_database(path)
    assert isinstance(database, SqliteDatabase)
    try:
        yield database
    finally:
        database.close()


def _dump(database: SqliteDatabase) -> dict[str, list[tuple[Any, ...]]]:
    connection = sqlite3.connect(database.path)
    try:
        tables = {table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(),
                                key=repr)
                  for table in ("active_calls", "cdrs", "cdr_attempts")}
        # A binding's row id is a surrogate nothing refers to (bindings are keyed by
        # username and contact): saved, removed and another saved in one batch, the
        # merged insert numbers them in another order. CDR ids, which the billing cursor
        # reads, are compared above.
        tables["registrations"] = sorted(connection.execute(
            "SELECT username, contact, transport, source_host, source_port, nat, expires_at, "
            "registered_at, user_agent, call_id, path, mapping_gateway_id, customer "
            "FROM registrations").fetchall(), key=repr)
        return tables
    finally:
        connection.close()


def _apply(template: Path, name: str, batches: list[list[Statement]], merged: bool
           ) -> tuple[list[bool], dict[str, list[tuple[Any, ...]]]]:
    """Which batches committed (an attempt before its CDR is refused, all or nothing),
    and the tables after them all."""
    committed = []
    for database in _copy(template, name):
        for batch in batches:
            try:
                if merged:
                    database.commit_batch(batch, "writer")
                else:
                    Database.commit_batch(database, batch, "writer")
            except StorageError:
                committed.append(False)
            else:
                committed.append(True)
        return committed, _dump(database)
    raise AssertionError("unreachable")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(statement, min_size=1, max_size=40), min_size=1, max_size=3))
def test_merged_batches_leave_what_single_statements_leave(
        template: Path, batches: list[list[Statement]]) -> None:
    one_by_one = _apply(template, "single.db", batches, merged=False)
    merged = _apply(template, "merged.db", batches, merged=True)
    assert merged == one_by_one


def test_a_call_s_statements_become_one_statement_per_kind() -> None:
    batch: list[Statement] = []
    for n in range(100):
        call = f"{n}@h"
        batch += [(active_calls._NOTE, (call, "{}", 1.0, "n1")),
                  (active_calls._ANSWERED, (2.0, "[]", call)),
                  (INSERT, _cdr(call, 0)),
                  (INSERT_ATTEMPT, _attempt(call, 1, 0)),
                  (active_calls._DONE, (call,))]
    out = coalesce.coalesce(batch)
    # 100 rows each: chunks of 64 + 32 + 4 (CDRs: 32 per statement under 999 parameters)
    assert len(out) < 20
    # The answers: one CASE per column (answer_at, dialogs) over the 100 calls.
    assert sum(sql.count("WHEN ?") for sql, _ in out) == 2 * 100


def test_a_call_id_used_again_cuts_the_batch() -> None:
    note = (active_calls._NOTE, ("a@h", "{}", 1.0, ""))
    done = (active_calls._DONE, ("a@h",))
    out = coalesce.coalesce([note, done, note])
    # Not merged into "insert both, then delete": the second note must survive.
    assert out == [note, done, note]


def test_statements_not_registered_run_alone_in_their_place() -> None:
    purge = (registrations._PURGE, (5.0,))
    note_a = (active_calls._NOTE, ("a@h", "{}", 1.0, ""))
    note_b = (active_calls._NOTE, ("b@h", "{}", 1.0, ""))
    out = coalesce.coalesce([note_a, purge, note_b])
    assert out == [note_a, purge, note_b]


def test_a_statement_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError):
        coalesce.insert(active_calls._NOTE, space="active_calls", key=(0,), phase=0)
    with pytest.raises(ValueError):
        coalesce.insert("UPDATE t SET a = ?", space="t", key=(0,), phase=0)
