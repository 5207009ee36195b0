"""Both storage backends keep the one contract of ``b2bua.storage.backend.Database``:
statements, rows as dicts, transactions that join, errors mapped, the change marker, the
advisory lock; and PostgreSQL's recovery from a server restart."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pgserver
import pytest
from support import REPO

from b2bua.storage import cluster, migrate, open_database, postgres
from b2bua.storage.backend import (
    BusyError,
    ConflictError,
    Database,
    StorageError,
    UnavailableError,
)
from b2bua.storage.writer import DbWriter, replay

WAIT = 5.0  # seconds: the bound of every wait for another connection's effect

# How a connection gives up waiting for another's lock quickly, per backend.
SHORT_LOCK_WAIT = {"sqlite": "PRAGMA busy_timeout = 100", "postgresql": "SET lock_timeout = 100"}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty database of each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def url(empty_url: str) -> str:
    """A migrated database of each backend."""
    with open_database(empty_url) as database:
        migrate.migrate(database)
    return empty_url


@pytest.fixture
def connect(url: str) -> Iterator[Callable[[], Database]]:
    """Opens connections to ``url``, closed at the end."""
    opened: list[Database] = []

    def opener() -> Database:
        opened.append(open_database(url))
        return opened[-1]

    yield opener
    for database in opened:
        database.close()


def wait_for(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def add_group(database: Database, name: str) -> int:
    return database.insert("INSERT INTO number_groups (name, memo) VALUES (?, ?) RETURNING id",
                           (name, f"memo of {name}"))


def test_statements_rows_and_placeholders(connect: Callable[[], Database]) -> None:
    db = connect()
    first, second = add_group(db, "alpha"), add_group(db, "beta")
    assert second > first > 0
    db.execute_many("INSERT INTO number_transforms (number, replacement) VALUES (?, ?)",
                    [("100", "200"), ("101", "201"), ("102", "202")])
    assert db.execute("UPDATE number_transforms SET memo = ? WHERE number > ?",
                      ("changed", "100")) == 2
    assert db.rows("SELECT number, replacement, memo FROM number_transforms ORDER BY number") == [
        {"number": "100", "replacement": "200", "memo": ""},
        {"number": "101", "replacement": "201", "memo": "changed"},
        {"number": "102", "replacement": "202", "memo": "changed"}]
    assert db.row("SELECT name FROM number_groups WHERE id = ?", (second,)) == {"name": "beta"}
    assert db.row("SELECT name FROM number_groups WHERE id = ?", (second + 100,)) is None
    assert db.value("SELECT COUNT(*) FROM number_transforms") == 3
    assert db.value("SELECT name FROM number_groups WHERE name = ?", ("none",)) is None
    # '?' and '%' inside quotes are text; a '%' pattern next to a placeholder.
    assert db.row("SELECT '?' AS q, '100%' AS pct, name FROM number_groups "
                  "WHERE name LIKE 'al%' AND memo LIKE ?", ("%alpha",)) == \
        {"q": "?", "pct": "100%", "name": "alpha"}
    # Aggregates come back as the same Python types on both.
    totals = db.row("SELECT SUM(id) AS total, AVG(id) AS mean, MAX(memo) AS top "
                    "FROM number_groups")
    assert totals == {"total": first + second, "mean": (first + second) / 2,
                      "top": "memo of beta"}
    assert type(totals["total"]) is int and type(totals["mean"]) is float
    assert db.execute("DELETE FROM number_transforms") == 3
    assert not db.in_transaction


def test_transaction_commits_and_rolls_back(connect: Callable[[], Database]) -> None:
    db, other = connect(), connect()
    with db.transaction():
        assert db.in_transaction
        add_group(db, "kept")
        assert other.value("SELECT COUNT(*) FROM number_groups") == 0  # not yet committed
    assert not db.in_transaction
    assert other.value("SELECT name FROM number_groups") == "kept"
    with pytest.raises(RuntimeError), db.transaction():
        add_group(db, "dropped")
        raise RuntimeError("abandon")
    assert not db.in_transaction
    assert [r["name"] for r in other.rows("SELECT name FROM number_groups")] == ["kept"]


def test_a_nested_transaction_joins_the_open_one(connect: Callable[[], Database]) -> None:
    db, other = connect(), connect()
    with pytest.raises(RuntimeError), db.transaction():
        add_group(db, "outer")
        with db.transaction():
            add_group(db, "inner")
            assert db.in_transaction
        assert db.in_transaction  # the inner block's end commits nothing
        assert other.value("SELECT COUNT(*) FROM number_groups") == 0
        raise RuntimeError("the outer block fails")
    assert other.value("SELECT COUNT(*) FROM number_groups") == 0
    with db.transaction():
        with db.transaction():
            add_group(db, "inner")
        add_group(db, "outer")
    assert other.value("SELECT COUNT(*) FROM number_groups") == 2


def test_constraint_violations_are_conflicts(connect: Callable[[], Database]) -> None:
    db = connect()
    group = add_group(db, "dup")
    with pytest.raises(ConflictError):
        add_group(db, "dup")
    with pytest.raises(ConflictError):  # a foreign key: no such group
        db.execute("INSERT INTO number_group_members (group_id, number) VALUES (?, ?)",
                   (group + 1000, "1"))
    with pytest.raises(ConflictError):  # NOT NULL
        db.execute("INSERT INTO number_groups (name) VALUES (NULL)")
    with pytest.raises(ConflictError), db.transaction():
        add_group(db, "in a transaction")
        add_group(db, "dup")
    assert not db.in_transaction
    assert [r["name"] for r in db.rows("SELECT name FROM number_groups")] == ["dup"]
    with pytest.raises(StorageError) as caught:
        db.rows("SELECT nothing FROM nowhere")
    assert not isinstance(caught.value, (ConflictError, BusyError, UnavailableError))
    assert db.value("SELECT COUNT(*) FROM number_groups") == 1  # still usable


def test_a_batch_commits_in_order_or_not_at_all(connect: Callable[[], Database]) -> None:
    """The writer's batch: different statements in submission order (a later one reads
    what an earlier one wrote), NUL text as a single statement stores it; one that fails
    fails the transaction, nothing of the batch stays, and the connection goes on."""
    db, other = connect(), connect()
    insert = "INSERT INTO number_groups (name, memo) VALUES (?, ?)"
    db.commit_batch([
        (insert, ("first", "")),
        ("UPDATE number_groups SET memo = ? WHERE name = ?", ("seen", "first")),
        (insert, ("nul\x00", "x")),
        ("INSERT INTO number_group_members (group_id, number) "
         "VALUES ((SELECT id FROM number_groups WHERE name = ?), ?)", ("first", "7")),
        ("DELETE FROM number_groups WHERE name = ?", ("nul\x00",)),
    ], "writer")
    assert other.rows("SELECT name, memo FROM number_groups") == [{"name": "first",
                                                                    "memo": "seen"}]
    assert other.value("SELECT COUNT(*) FROM number_group_members") == 1
    with pytest.raises(ConflictError):
        db.commit_batch([(insert, ("second", "")), (insert, ("first", "")),
                         (insert, ("third", ""))], "writer")
    assert not db.in_transaction
    assert other.value("SELECT COUNT(*) FROM number_groups") == 1
    db.commit_batch([(insert, ("after", ""))], "writer")  # the connection goes on
    assert other.value("SELECT COUNT(*) FROM number_groups") == 2
    with db.transaction():  # inside an open transaction: joins it
        db.commit_batch([(insert, ("joined", ""))], "writer")
        assert other.value("SELECT COUNT(*) FROM number_groups") == 2
    assert other.value("SELECT COUNT(*) FROM number_groups") == 3


def test_a_held_lock_is_busy_not_a_hang(url: str, connect: Callable[[], Database]) -> None:
    db, other = connect(), connect()
    add_group(db, "row")
    other.execute(SHORT_LOCK_WAIT[db.kind])
    with db.transaction():
        db.execute("UPDATE number_groups SET memo = 'mine'")
        started = time.monotonic()
        with pytest.raises(BusyError):
            other.execute("UPDATE number_groups SET memo = 'theirs'")
        assert time.monotonic() - started < WAIT
    assert other.execute("UPDATE number_groups SET memo = 'theirs'") == 1


def test_a_transaction_is_taken_for_writing_at_once(connect: Callable[[], Database]) -> None:
    """A second transaction waits for the first to end, then reads what it wrote: a
    block that reads, checks and writes (an If-Match) cannot lose another's write."""
    db, other = connect(), connect()
    add_group(db, "row")
    seen: list[str] = []

    def read_then_write() -> None:
        with other.transaction():
            seen.append(str(other.value("SELECT memo FROM number_groups")))
            other.execute("UPDATE number_groups SET memo = ?", (seen[-1] + ", second",))

    with db.transaction():
        db.value("SELECT memo FROM number_groups")  # a read only, and still exclusive
        second = threading.Thread(target=read_then_write)
        second.start()
        time.sleep(0.3)
        assert seen == [] and second.is_alive()
        db.execute("UPDATE number_groups SET memo = 'first'")
    second.join(WAIT)
    assert seen == ["first"]
    assert db.value("SELECT memo FROM number_groups") == "first, second"


def test_a_transaction_waiting_too_long_is_busy(connect: Callable[[], Database]) -> None:
    db, other = connect(), connect()
    other.execute(SHORT_LOCK_WAIT[db.kind])
    with db.transaction():
        started = time.monotonic()
        with pytest.raises(BusyError), other.transaction():
            add_group(other, "never")
        assert time.monotonic() - started < WAIT
        assert not other.in_transaction
        with pytest.raises(BusyError):  # the writer's batch too
            other.commit_batch([("INSERT INTO number_groups (name) VALUES (?)",
                                 ("never",))], "writer")
        assert not other.in_transaction
    with other.transaction():
        add_group(other, "now")
    assert [r["name"] for r in db.rows("SELECT name FROM number_groups")] == ["now"]


def test_text_with_nul_is_stored_not_refused(connect: Callable[[], Database]) -> None:
    """SQLite keeps a NUL character; PostgreSQL cannot, and gets U+FFFD in its place,
    rather than failing the statement (and the transaction of a batch with it)."""
    db = connect()
    with db.transaction():
        add_group(db, "a\x00b")
        add_group(db, "plain")
    names = [r["name"] for r in db.rows("SELECT name FROM number_groups ORDER BY id")]
    kept = "a\x00b" if db.kind == "sqlite" else "a\ufffdb"
    assert names == [kept, "plain"]
    assert db.value("SELECT COUNT(*) FROM number_groups WHERE name = ?", (kept,)) == 1


def test_tables_lists_the_schema(connect: Callable[[], Database]) -> None:
    tables = connect().tables()
    assert tables == sorted(tables)
    assert {"schema_migrations", "config_versions", "cdrs", "phones", "routing_gateways",
            "number_group_members"} <= set(tables)
    assert not [t for t in tables if t.startswith(("sqlite_", "pg_"))]


def test_change_marker_moves_when_another_connection_changes_config(
        connect: Callable[[], Database], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "SLOW_POLL", 3600.0)  # only notifications move it here
    watcher, api = connect(), connect()
    watcher.change_marker()
    if isinstance(watcher, postgres.PostgresDatabase):
        assert wait_for(lambda: watcher.listening), "the LISTEN connection did not open"
    before = watcher.change_marker()
    time.sleep(0.3)
    assert watcher.change_marker() == before  # nothing changed, nothing to read
    versions = {r["table_name"]: r["version"]
                for r in watcher.rows("SELECT table_name, version FROM config_versions")}
    api.execute("INSERT INTO number_transforms (number, replacement) VALUES ('1', '2')")
    assert wait_for(lambda: watcher.change_marker() != before)
    after = {r["table_name"]: r["version"]
             for r in watcher.rows("SELECT table_name, version FROM config_versions")}
    assert after == {**versions, "number_transforms": versions["number_transforms"] + 1}


def test_advisory_lock_excludes_a_second_holder(connect: Callable[[], Database]) -> None:
    first, second = connect(), connect()
    events: list[str] = []
    with first.advisory_lock("cleanup"):
        with second.advisory_lock("another job"):
            events.append("another name is free")

        def take() -> None:
            with second.advisory_lock("cleanup"):
                events.append("second holds it")

        waiter = threading.Thread(target=take)
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and events == ["another name is free"]
        events.append("first releases")
    waiter.join(WAIT)
    assert not waiter.is_alive()
    assert events == ["another name is free", "first releases", "second holds it"]


def test_a_held_lock_is_one_holders_until_released_or_its_process_dies(
        url: str, connect: Callable[[], Database]) -> None:
    """``try_hold``: a node's life lock (docs/cluster.md)."""
    first, second = connect(), connect()
    assert second.lock_free("node:a")  # a look: taken and let go at once
    held = first.try_hold("node:a")
    assert held is not None and held.held()
    assert second.try_hold("node:a") is None
    assert not second.lock_free("node:a") and not first.lock_free("node:a")
    assert second.lock_free("node:b") and second.lock_free("node:b")  # still free after
    other = second.try_hold("node:b")
    assert other is not None
    other.release()
    held.release()
    again = second.try_hold("node:a")
    assert again is not None
    again.release()
    # A process holding it and killed: the lock is free again, with nobody releasing it.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from b2bua.storage import open_database\n"
         f"lock = open_database({url!r}).try_hold('node:a')\n"
         "print('held' if lock else 'busy', flush=True)\n"
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert second.try_hold("node:a") is None
        holder.kill()
        holder.wait(WAIT)
        assert wait_for(lambda: (lock := second.try_hold("node:a")) is not None
                        and (lock.release() or True))
    finally:
        holder.kill()
        holder.wait(WAIT)


def test_nodes_are_listed_once_each(connect: Callable[[], Database]) -> None:
    database = connect()
    cluster.register_node(database, "a", "198.18.1.1:5060", "127.0.0.1:8088", 1.0)
    cluster.register_node(database, "b", "198.18.1.2:5060", "127.0.0.1:8088", 2.0)
    cluster.register_node(database, "a", "198.18.1.9:5060", "127.0.0.1:8089", 3.0)
    assert cluster.nodes(database) == [
        cluster.NodeRow("a", "198.18.1.9:5060", "127.0.0.1:8089", 3.0),
        cluster.NodeRow("b", "198.18.1.2:5060", "127.0.0.1:8088", 2.0)]
    assert cluster.forget_node(database, "b")
    assert [n.name for n in cluster.nodes(database)] == ["a"]


def test_two_nodes_migrating_at_once_migrate_once(empty_url: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def node() -> None:
        try:
            with open_database(empty_url) as database:
                results.append(migrate.migrate(database))
        except BaseException as exc:
            errors.append(exc)

    nodes = [threading.Thread(target=node) for _ in range(2)]
    for thread in nodes:
        thread.start()
    for thread in nodes:
        thread.join(30)
    assert errors == []
    assert sorted(results) == [[], list(range(1, migrate.latest_version() + 1))]


# -- PostgreSQL: the server goes away and comes back -------------------------------------


def test_postgres_outage_is_unavailable_then_recovers(private_pg: pgserver.PgServer
                                                      ) -> None:
    url = pgserver.create_database(private_pg.admin_url)
    db, api = open_database(url), open_database(url)
    assert isinstance(db, postgres.PostgresDatabase)
    try:
        migrate.migrate(db)
        db.change_marker()
        assert wait_for(lambda: db.listening)
        add_group(db, "before")

        private_pg.stop()
        with pytest.raises(UnavailableError):
            db.value("SELECT COUNT(*) FROM number_groups")
        with pytest.raises(UnavailableError):
            add_group(db, "during")
        with pytest.raises(UnavailableError), db.transaction():
            add_group(db, "during")
        with pytest.raises(UnavailableError), db.advisory_lock("cleanup"):
            pass
        with pytest.raises(UnavailableError):
            open_database(url)
        marker = db.change_marker()  # never raises: the engine polls it from its loop
        assert isinstance(marker, int) and not db.in_transaction

        private_pg.start()
        assert db.value("SELECT COUNT(*) FROM number_groups") == 1
        # The other connection saw no failure: it was idle through the restart.
        add_group(api, "after")
        assert wait_for(lambda: db.listening and db.change_marker() > marker)
        with db.transaction():
            add_group(db, "in a transaction")
        assert db.value("SELECT COUNT(*) FROM number_groups") == 3
    finally:
        db.close()
        api.close()


def test_postgres_writer_waits_out_an_outage_and_saves_what_a_stop_could_not_write(
        private_pg: pgserver.PgServer, tmp_path: Path) -> None:
    url = pgserver.create_database(private_pg.admin_url)
    with open_database(url) as database:
        migrate.migrate(database)
    insert = "INSERT INTO number_groups (name) VALUES (?)"
    writer = DbWriter(url, spill_to=tmp_path / "database")
    writer.start()
    writer.submit(insert, ("before",))
    assert writer.flush()

    private_pg.stop()
    writer.submit(insert, ("during",))
    time.sleep(0.5)
    private_pg.start()
    assert writer.flush(timeout=WAIT)  # applied once the server is back

    private_pg.stop()
    writer.submit(insert, ("at the stop",))
    saved = writer.close(timeout=1.0)
    assert saved is not None and saved.parent == tmp_path
    private_pg.start()
    with open_database(url) as database:
        assert replay(database, tmp_path / "database") == 1
        assert [r["name"] for r in database.rows("SELECT name FROM number_groups "
                                                 "ORDER BY id")] == \
            ["before", "during", "at the stop"]
    assert writer.failed == 0 and not saved.exists()


def test_postgres_change_marker_ticks_on_its_own(pg_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "SLOW_POLL", 0.2)
    with open_database(pg_url) as db:
        first = db.change_marker()
        assert wait_for(lambda: db.change_marker() >= first + 2, timeout=2.0)
