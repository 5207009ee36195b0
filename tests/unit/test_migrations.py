"""Schema migrations: fresh, idempotent, upgrade, and refusal of a newer database."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2bua.storage import db, migrate, open_database, params_store


def test_fresh_database_reaches_latest_in_wal_mode(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "new" / "s.db")
    applied = migrate.migrate(conn)
    assert applied == list(range(1, migrate.latest_version() + 1))
    assert migrate.current_version(conn) == migrate.latest_version()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"api_tokens", "parameters", "config_versions", "audit_log"} <= tables


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "s.db")
    migrate.migrate(conn)
    assert migrate.migrate(conn) == []
    count = conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]
    assert count == migrate.latest_version()


def test_upgrade_from_version_one_keeps_data(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "s.db")
    assert migrate.migrate(conn, target=1) == [1]
    with open_database(tmp_path / "s.db") as database:
        params_store.set_value(database, "SS_SIP_TIMEOUT_INVITE", 42)
        applied = migrate.migrate(conn)
        assert applied == list(range(2, migrate.latest_version() + 1))
        assert params_store.load_values(database)["SS_SIP_TIMEOUT_INVITE"] == 42


def test_newer_database_is_refused(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "s.db")
    migrate.migrate(conn)
    conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'x', 0)")
    with pytest.raises(migrate.SchemaTooNewError, match="newer than this softswitch"):
        migrate.migrate(conn)


def test_config_counter_moves_with_parameter_changes(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "s.db")
    migrate.migrate(conn)

    def version() -> int:
        row = conn.execute(
            "SELECT version FROM config_versions WHERE table_name='parameters'"
        ).fetchone()
        return int(row[0])

    before = version()
    with open_database(tmp_path / "s.db") as database:
        params_store.set_value(database, "SS_SIP_TIMEOUT_INVITE", 5)
        params_store.set_value(database, "SS_SIP_TIMEOUT_INVITE", 6)
    assert version() == before + 2


def test_invalid_stored_value_falls_back_to_default(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "s.db")
    migrate.migrate(conn)
    conn.execute("INSERT INTO parameters (name, value) VALUES ('SS_SIP_TIMEOUT_INVITE', '9999')")
    conn.execute("INSERT INTO parameters (name, value) VALUES ('SS_UNKNOWN', '1')")
    with open_database(tmp_path / "s.db") as database:
        assert params_store.load_values(database)["SS_SIP_TIMEOUT_INVITE"] == 10


def test_failed_combination_leaves_value_unchanged(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "s.db")
    migrate.migrate(conn)
    conn.close()
    with open_database(tmp_path / "s.db") as database:
        with pytest.raises(ValueError):
            params_store.set_value(database, "SS_RTPENCRYPTIONMODE", 3)
        assert params_store.load_values(database)["SS_RTPENCRYPTIONMODE"] == 0
        assert not database.in_transaction


def test_dns_vendor_migration_frees_the_port_and_keeps_the_reload_counter(tmp_path: Path
                                                                          ) -> None:
    conn = db.connect(tmp_path / "s.db")
    migrate.migrate(conn, target=10)
    conn.execute("INSERT INTO routing_gateways (name, host, port) VALUES ('a', '192.0.2.1', 5070)")

    def version() -> int:
        return int(conn.execute("SELECT version FROM config_versions "
                                "WHERE table_name = 'routing_gateways'").fetchone()[0])

    before = version()
    assert migrate.migrate(conn) == list(range(11, migrate.latest_version() + 1))
    assert version() == before  # a running engine's count goes on, never back
    conn.execute("INSERT INTO routing_gateways (name, host) VALUES ('b', 'sip.example.net')")
    assert version() == before + 1  # the triggers survive the table's rebuild
    rows = conn.execute("SELECT name, port FROM routing_gateways ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("a", 5070), ("b", None)]
    columns = {r[1] for r in conn.execute("PRAGMA table_info(cdr_attempts)")}
    assert "target" in columns
