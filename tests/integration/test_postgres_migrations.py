"""Migrations on PostgreSQL: the baseline for versions 1 to 13, ``up_postgresql`` for
later ones (required), one transaction per version, refusal of a newer database."""

from __future__ import annotations

import types
from collections.abc import Iterator

import pytest

import migrations
from b2bua.storage import migrate, open_database
from b2bua.storage.backend import Database

LATEST = migrate.latest_version()


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    with open_database(pg_url) as database:
        yield database


def later_migration(monkeypatch: pytest.MonkeyPatch, *, postgresql: bool = True,
                    fail: bool = False) -> types.ModuleType:
    """A migration after the last real one, listed with them."""
    module = types.ModuleType(f"migrations.m{LATEST + 1:04d}_test")
    module.VERSION = LATEST + 1  # type: ignore[attr-defined]

    def up_postgresql(database: Database) -> None:
        database.execute("ALTER TABLE phones ADD COLUMN nickname text")
        if fail:
            raise RuntimeError("broken migration")

    if postgresql:
        module.up_postgresql = up_postgresql  # type: ignore[attr-defined]
    real = migrations.load_all()
    monkeypatch.setattr(migrations, "load_all", lambda: [*real, module])
    return module


def phone_columns(database: Database) -> set[str]:
    return {r["column_name"] for r in database.rows(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'phones'")}


def test_fresh_database_gets_the_baseline_once(pg: Database) -> None:
    assert migrate.current_version(pg) == 0 and pg.tables() == []
    assert migrate.migrate(pg) == list(range(1, LATEST + 1))
    assert migrate.migrate(pg) == []
    assert migrate.current_version(pg) == LATEST
    names = [r["name"] for r in pg.rows("SELECT name FROM schema_migrations ORDER BY version")]
    assert names == [m.__name__.rsplit(".", 1)[-1] for m in migrations.load_all()]


def test_newer_database_is_refused(pg: Database) -> None:
    migrate.migrate(pg)
    pg.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
               (LATEST + 50, "future", 0.0))
    with pytest.raises(migrate.SchemaTooNewError, match=f"version {LATEST + 50} is newer"):
        migrate.migrate(pg)


def test_no_target_below_the_baseline(pg: Database) -> None:
    with pytest.raises(migrate.MigrationError, match="starts at version 13"):
        migrate.migrate(pg, target=5)
    assert pg.tables() == []


def test_a_later_migration_runs_its_postgresql_step(pg: Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    migrate.migrate(pg)
    later_migration(monkeypatch)
    assert migrate.migrate(pg) == [LATEST + 1]
    assert "nickname" in phone_columns(pg)
    assert pg.value("SELECT name FROM schema_migrations WHERE version = ?",
                    (LATEST + 1,)) == f"m{LATEST + 1:04d}_test"


def test_a_fresh_database_gets_baseline_then_later_steps(
        pg: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    later_migration(monkeypatch)
    assert migrate.migrate(pg) == list(range(1, LATEST + 2))
    assert "nickname" in phone_columns(pg)


def test_a_migration_without_a_postgresql_step_is_refused_before_anything_runs(
        pg: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    later_migration(monkeypatch, postgresql=False)
    with pytest.raises(migrate.MigrationError, match=f"up_postgresql.*m{LATEST + 1:04d}_test"):
        migrate.migrate(pg)
    assert pg.tables() == []  # not even the baseline


def test_a_failing_step_rolls_back_with_its_version(pg: Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    migrate.migrate(pg)
    later_migration(monkeypatch, fail=True)
    with pytest.raises(RuntimeError, match="broken migration"):
        migrate.migrate(pg)
    assert migrate.current_version(pg) == LATEST
    assert "nickname" not in phone_columns(pg)
    assert not pg.in_transaction


def test_a_database_with_part_of_the_baseline_is_refused(pg: Database) -> None:
    pg.execute("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, name text, "
               "applied_at double precision)")
    pg.execute("INSERT INTO schema_migrations VALUES (1, 'm0001_core', 0)")
    with pytest.raises(migrate.MigrationError, match="not made by these migrations"):
        migrate.migrate(pg)
