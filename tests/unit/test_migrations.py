"""Schema migrations: fresh, idempotent, upgrade, refusal of a newer database, the one
lock that lets a single process migrate at a time, and the config counters (the step by
step upgrades are SQLite's; PostgreSQL's baseline is tested in
tests/integration/test_postgres_migrations.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import migrations
from b2bua.storage import migrate, open_database, params_store
from b2bua.storage.backend import Database
from b2bua.storage.sqlite import SqliteDatabase

# Marks the tests that run on both backends (the fixture below: a new empty database).
BOTH = pytest.mark.both_backends


@pytest.fixture
def database(db_target: str) -> Iterator[Database]:
    with open_database(db_target) as opened:
        yield opened


def test_fresh_database_reaches_latest_in_wal_mode(tmp_path: Path) -> None:
    database = SqliteDatabase(tmp_path / "new" / "s.db")
    applied = migrate.migrate(database)
    assert applied == list(range(1, migrate.latest_version() + 1))
    assert migrate.current_version(database) == migrate.latest_version()
    assert database.value("PRAGMA journal_mode") == "wal"
    assert {"api_tokens", "parameters", "config_versions", "audit_log"} <= set(database.tables())


@BOTH
def test_migrate_is_idempotent(database: Database) -> None:
    migrate.migrate(database)
    assert migrate.migrate(database) == []
    assert database.value("SELECT COUNT(*) FROM schema_migrations") == migrate.latest_version()


def test_upgrade_from_version_one_keeps_data(tmp_path: Path) -> None:
    database = SqliteDatabase(tmp_path / "s.db")
    assert migrate.migrate(database, target=1) == [1]
    params_store.set_value(database, "SS_SIP_TIMEOUT_INVITE", 42)
    applied = migrate.migrate(database)
    assert applied == list(range(2, migrate.latest_version() + 1))
    assert params_store.load_values(database)["SS_SIP_TIMEOUT_INVITE"] == 42


@BOTH
def test_newer_database_is_refused(database: Database) -> None:
    migrate.migrate(database)
    database.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                     "VALUES (999, 'x', 0)")
    with pytest.raises(migrate.SchemaTooNewError, match="newer than this softswitch"):
        migrate.migrate(database)
    with pytest.raises(migrate.SchemaTooNewError):
        migrate.check_not_newer(database)


def test_a_failed_migration_leaves_the_previous_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = SqliteDatabase(tmp_path / "s.db")
    migrate.migrate(database, target=12)
    module = migrations.load_all()[12]
    assert module.VERSION == 13

    real_up = module.up

    def broken(db: object) -> None:
        real_up(db)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(module, "up", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        migrate.migrate(database)
    assert migrate.current_version(database) == 12
    columns = {r["name"] for r in database.rows("PRAGMA table_info(registrations)")}
    assert "mapping_gateway_id" not in columns  # rolled back with its version row
    assert not database.in_transaction


@BOTH
def test_migrating_waits_for_another_process_holding_the_lock(db_target: str) -> None:
    with open_database(db_target) as holder, open_database(db_target) as other:
        finished: list[list[int]] = []
        with holder.advisory_lock("migrate"):
            worker = threading.Thread(target=lambda: finished.append(migrate.migrate(other)))
            worker.start()
            time.sleep(0.3)
            assert finished == [] and worker.is_alive()
        worker.join(10)
        assert finished == [list(range(1, migrate.latest_version() + 1))]
        assert migrate.migrate(holder) == []


@BOTH
def test_config_counter_moves_with_parameter_changes(database: Database) -> None:
    migrate.migrate(database)

    def version() -> int:
        return int(database.value(
            "SELECT version FROM config_versions WHERE table_name='parameters'"))

    before = version()
    params_store.set_value(database, "SS_SIP_TIMEOUT_INVITE", 5)
    params_store.set_value(database, "SS_SIP_TIMEOUT_INVITE", 6)
    assert version() == before + 2


@BOTH
def test_invalid_stored_value_falls_back_to_default(database: Database) -> None:
    migrate.migrate(database)
    database.execute("INSERT INTO parameters (name, value) "
                     "VALUES ('SS_SIP_TIMEOUT_INVITE', '9999')")
    database.execute("INSERT INTO parameters (name, value) VALUES ('SS_UNKNOWN', '1')")
    assert params_store.load_values(database)["SS_SIP_TIMEOUT_INVITE"] == 10


@BOTH
def test_failed_combination_leaves_value_unchanged(database: Database) -> None:
    migrate.migrate(database)
    with pytest.raises(ValueError):
        params_store.set_value(database, "SS_RTPENCRYPTIONMODE", 3)
    assert params_store.load_values(database)["SS_RTPENCRYPTIONMODE"] == 0
    assert not database.in_transaction


def test_dns_vendor_migration_frees_the_port_and_keeps_the_reload_counter(tmp_path: Path
                                                                          ) -> None:
    database = SqliteDatabase(tmp_path / "s.db")
    migrate.migrate(database, target=10)
    database.execute("INSERT INTO routing_gateways (name, host, port) "
                     "VALUES ('a', '192.0.2.1', 5070)")

    def version() -> int:
        return int(database.value("SELECT version FROM config_versions "
                                  "WHERE table_name = 'routing_gateways'"))

    before = version()
    assert migrate.migrate(database) == list(range(11, migrate.latest_version() + 1))
    assert version() == before  # a running engine's count goes on, never back
    database.execute("INSERT INTO routing_gateways (name, host) VALUES ('b', 'sip.example.net')")
    assert version() == before + 1  # the triggers survive the table's rebuild
    rows = database.rows("SELECT name, port FROM routing_gateways ORDER BY id")
    assert rows == [{"name": "a", "port": 5070}, {"name": "b", "port": None}]
    columns = {r["name"] for r in database.rows("PRAGMA table_info(cdr_attempts)")}
    assert "target" in columns
