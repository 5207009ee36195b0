"""The storage functions behind the API: generic config rows, CDR reads and export,
audit, group members, registrations; and what the API answers when the database refuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apitest import assert_problem, auth, make_api

from b2bua.storage import (
    audit,
    cdrs,
    crud,
    gateway_registrations,
    migrate,
    number_groups,
    open_database,
)
from b2bua.storage.backend import BusyError, ConflictError, Database, UnavailableError

pytestmark = pytest.mark.both_backends


@pytest.fixture
def database(db_target: str) -> Iterator[Database]:
    with open_database(db_target) as opened:
        migrate.migrate(opened)
        yield opened


def test_crud_edits_only_config_tables_and_plain_column_names(database: Database) -> None:
    with pytest.raises(ValueError, match="not a configuration table"):
        crud.get(database, "api_tokens", 1)
    with pytest.raises(ValueError, match="not a column"):
        crud.insert(database, "number_groups", {"name; DROP TABLE cdrs": "x"})
    with pytest.raises(ValueError, match="not a column"):
        crud.list_after(database, "number_groups", 0, 10, {"Name": "x"})


def test_crud_insert_returns_the_id_and_stores_booleans_as_integers(database: Database) -> None:
    first = crud.insert(database, "phones", {"username": "100", "password": "p",
                                             "enabled": True})
    second = crud.insert(database, "phones", {"username": "101", "password": "p",
                                              "enabled": False})
    assert second == first + 1
    assert crud.get(database, "phones", first)["enabled"] == 1  # type: ignore[index]
    assert [r["id"] for r in crud.list_after(database, "phones", 0, 10, {"enabled": False})] \
        == [second]
    assert crud.update(database, "phones", second, {"enabled": True}) == 1
    assert len(crud.list_after(database, "phones", 0, 10, {"enabled": True})) == 2
    with pytest.raises(ConflictError):
        crud.insert(database, "phones", {"username": "100", "password": "p"})
    assert crud.delete(database, "phones", first) == 1
    assert crud.get(database, "phones", first) is None


def _cdr(database: Database, caller: str, start: float) -> None:
    database.execute(
        "INSERT INTO cdrs (call_id_in, caller, callee, source, start_at, end_at, duration, "
        "final_code) VALUES (?, ?, '1', 'x', ?, ?, 0, 200)",
        (f"c{start}", caller, start, start + 1))


def test_cdr_export_reads_in_chunks_up_to_its_end_and_limit(
        database: Database, db_target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdrs, "EXPORT_CHUNK", 3)
    with database.transaction():
        for i in range(10):
            _cdr(database, "44%1" if i % 2 else "4471", float(i))
    everything = cdrs.CdrFilter()
    assert cdrs.export_end(database, everything, 0, 4) == (4, True)
    assert cdrs.export_end(database, everything, 0, 10) == (10, False)
    chunks = list(cdrs.export_rows(db_target, ("id", "caller"), everything, 2, 9, 5))
    assert [len(c) for c in chunks] == [3, 2]
    assert [row[0] for c in chunks for row in c] == [3, 4, 5, 6, 7]
    # A prefix is compared as text: the % in a number is not a wildcard.
    prefix = cdrs.CdrFilter(caller="44%", caller_prefix=True)
    assert [r["id"] for r in cdrs.page(database, prefix, 0, 100)] == [2, 4, 6, 8, 10]
    assert [r["id"] for r in cdrs.newest(database, prefix, 2)] == [8, 10]
    exact = cdrs.CdrFilter(caller="4471", since=4.0, until=8.0)
    assert [r["id"] for r in cdrs.page(database, exact, 0, 100)] == [5, 7]


def test_audit_entries_filter_and_decode(database: Database) -> None:
    audit.record(database, "cli", "update", "parameter/SS_A", {"value": 1})
    audit.record(database, "token:ops", "create", "routing-gateways/3", None)
    database.execute("INSERT INTO audit_log (at, actor, action, resource, detail) "
                     "VALUES (0, 'hand', 'edit', 'routing_gateways', 'not json')")
    assert [e["detail"] for e in audit.entries(database, after_id=0, limit=10)] == [
        {"value": 1}, None, "not json"]
    assert [e["id"] for e in audit.entries(database, after_id=0, limit=10,
                                           resource_prefix="routing-")] == [2]
    assert [e["id"] for e in audit.entries(database, after_id=1, limit=1)] == [2]


def test_group_members_add_is_idempotent(database: Database) -> None:
    group = crud.insert(database, "number_groups", {"name": "g"})
    number_groups.add(database, group, ["1", "2", "2"])
    number_groups.add(database, group, ["2", "3"])
    assert number_groups.count(database, group) == 3
    assert number_groups.numbers_after(database, group, "1", 10) == ["2", "3"]
    number_groups.remove(database, group, ["3", "9"])
    number_groups.clear(database, group)
    assert number_groups.count(database, group) == 0


def test_gateway_registration_put_replaces(database: Database) -> None:
    gateway = crud.insert(database, "routing_gateways", {"name": "v", "host": "192.0.2.1"})
    settings = dict.fromkeys(gateway_registrations.SETTINGS) | {"enabled": True,
                                                                 "username": "u"}
    gateway_registrations.put(database, gateway, settings, 1.0)
    gateway_registrations.put(database, gateway, settings | {"enabled": False}, 2.0)
    row = gateway_registrations.get(database, gateway)
    assert row is not None and (row["enabled"], row["created_at"], row["updated_at"]) == (
        0, 1.0, 2.0)
    assert gateway_registrations.delete(database, gateway) == 1


@pytest.mark.parametrize(("error", "status"), [
    (BusyError("database is locked"), 503),
    (UnavailableError("connection refused"), 503),
    (ConflictError("FOREIGN KEY constraint failed"), 409),
])
def test_what_the_database_refuses_is_a_problem(
        tmp_path: Path, backend_db: str | None, monkeypatch: pytest.MonkeyPatch,
        error: Exception, status: int) -> None:
    api = make_api(tmp_path, backend_db)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr(audit, "entries", refuse)
    resp = api.client.get("/api/v1/audit", headers=auth(api.admin))
    body = assert_problem(resp, status)
    if status == 503:
        assert resp.headers["Retry-After"] and "retry" in body["detail"]
    else:
        assert body["detail"] == f"conflict: {error}"
