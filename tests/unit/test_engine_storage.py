"""What the engine keeps in and reads from its database, through b2bua/storage/, on the
real schema: bindings, active-call notes and recovery, the config watcher, vendor
registrations, the number tables."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.calls.cdr import ATTEMPT_COLUMNS, CdrRecord, CdrWriter
from b2bua.calls.recovery import REASON, recover
from b2bua.config.live import ConfigWatcher
from b2bua.registrar.bindings import Binding, BindingStore
from b2bua.registrar.phones import PhoneDirectory
from b2bua.sip.dialog import Dialog
from b2bua.sip.peer import Peer
from b2bua.storage import migrate, open_database
from b2bua.storage.active_calls import note_answered, note_ended, note_started
from b2bua.storage.backend import Database
from b2bua.storage.numbers import number_groups, transform_table
from b2bua.storage.phones import phone_accounts
from b2bua.storage.registrations import RegistrationLog, live_bindings
from b2bua.storage.upstream import vendor_registrations
from b2bua.storage.writer import DbWriter

T0 = 1_700_000_000.0


pytestmark = pytest.mark.both_backends


@pytest.fixture
def database(db_target: str) -> Iterator[Database]:
    with open_database(db_target) as opened:
        migrate.migrate(opened)
        yield opened


@pytest.fixture
def writer(database: Database, db_target: str, tmp_path: Path) -> Iterator[DbWriter]:
    started = DbWriter(db_target, spill_to=tmp_path / "database")
    started.start()
    yield started
    started.close()


def _binding(contact: str, expires_at: float, path: tuple[str, ...] = ()) -> Binding:
    return Binding("1001", contact, Peer("udp", "192.0.2.9", 5062), True, expires_at, T0,
                   "ua", "c1", path)


def test_bindings_survive_a_restart(database: Database, writer: DbWriter) -> None:
    store = BindingStore(RegistrationLog(writer))
    store.put(_binding("sip:1001@10.0.0.9", T0 + 60, ("<sip:p;lr>",)))
    store.put(_binding("sip:1001@10.0.0.8", T0 + 5))
    store.put(_binding("sip:1001@10.0.0.9", T0 + 120, ("<sip:p;lr>",)))  # a refresh
    assert writer.flush()
    (kept,) = live_bindings(database, T0 + 10)
    assert kept == _binding("sip:1001@10.0.0.9", T0 + 120, ("<sip:p;lr>",))
    assert sorted(b.contact for b in live_bindings(database, T0, "1001")) == \
        ["sip:1001@10.0.0.8", "sip:1001@10.0.0.9"]
    assert live_bindings(database, T0, "1002") == []
    restarted = BindingStore(RegistrationLog(writer))
    assert restarted.restore(live_bindings(database, T0)) == 2
    assert restarted.expire(T0 + 10) == 1
    assert restarted.remove("1001", "sip:1001@10.0.0.9") is not None
    assert writer.flush()
    assert database.value("SELECT COUNT(*) FROM registrations") == 0


def test_a_binding_through_the_edge_keeps_the_customers_address(database: Database,
                                                                writer: DbWriter) -> None:
    store = BindingStore(RegistrationLog(writer))
    customer = Peer("tcp", "2001:db8::7", 5070)
    store.put(dataclasses.replace(_binding("sip:1001@10.0.0.7", T0 + 60, ("<sip:e;lr>",)),
                                  customer=customer))
    assert writer.flush()
    (kept,) = live_bindings(database, T0)
    assert kept.customer == customer
    restarted = BindingStore(RegistrationLog(writer))
    restarted.restore([kept])
    assert restarted.find_by_source(customer, T0) == kept  # known by the vouched address
    assert restarted.find_by_source(kept.source, T0) is None  # not by the edge's


def test_a_cluster_node_follows_the_databases_bindings_and_keeps_its_newest(
        writer: DbWriter) -> None:
    """Another node's registration appears, one removed elsewhere goes, and one this
    node took a moment ago (its write not committed yet) stays."""
    store = BindingStore(RegistrationLog(writer))
    store.put(dataclasses.replace(_binding("sip:1001@10.0.0.1", T0 + 60), registered_at=T0 - 30))
    store.put(dataclasses.replace(_binding("sip:1001@10.0.0.2", T0 + 60), registered_at=T0 - 1))
    elsewhere = dataclasses.replace(_binding("sip:1001@10.0.0.3", T0 + 60), username="1002")
    assert store.follow([elsewhere], T0) == 1
    assert sorted(b.contact for b in store.all()) == ["sip:1001@10.0.0.2", "sip:1001@10.0.0.3"]


def _record(call_id: str) -> CdrRecord:
    return CdrRecord(call_id, None, "1001", "4930", "192.0.2.1:5060", 1, "customer", None,
                     None, T0, None, None, T0, 0.0, 0, "", "", "")


def test_calls_up_at_a_crash_become_interrupted_cdrs(database: Database,
                                                     writer: DbWriter) -> None:
    for call_id in ("up", "ringing", "ended", "again"):
        note_started(writer, _record(call_id))
    note_answered(writer, "up", T0 + 2)
    note_answered(writer, "again", T0 + 3)
    note_started(writer, _record("again"))  # noted afresh: not answered any more
    note_ended(writer, "ended")
    assert writer.flush()
    assert recover(database, now=T0 + 10) == 3
    cdrs = {r["call_id_in"]: r for r in database.rows("SELECT * FROM cdrs")}
    assert set(cdrs) == {"up", "ringing", "again"}
    assert (cdrs["up"]["final_code"], cdrs["up"]["duration"]) == (200, 8.0)
    assert (cdrs["again"]["final_code"], cdrs["again"]["answer_at"]) == (500, None)
    assert cdrs["ringing"]["termination_reason"] == REASON
    assert database.value("SELECT COUNT(*) FROM active_calls") == 0
    assert recover(database, now=T0 + 20) == 0


def test_each_node_recovers_its_own_calls_only(database: Database, writer: DbWriter) -> None:
    """Nodes sharing the database (docs/cluster.md): a node starting recovers what it
    left, never a live peer's calls; the node taking over a dead one recovers that one's,
    once, named in its CDRs."""
    for call_id, node in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("solo", None)):
        record = _record(call_id)
        record.node = node
        note_started(writer, record)
    assert writer.flush()
    assert recover(database, now=T0 + 10, node="b") == 1
    assert [r["call_id_in"] for r in database.rows("SELECT call_id_in FROM cdrs")] == ["b1"]
    assert database.value("SELECT node FROM cdrs") == "b"
    assert recover(database, now=T0 + 11, node="b") == 0  # once
    assert recover(database, now=T0 + 12, node="a") == 2
    assert recover(database, now=T0 + 13) == 1  # an unnamed switch's own
    assert database.value("SELECT COUNT(*) FROM cdrs") == 4
    assert database.value("SELECT COUNT(*) FROM active_calls") == 0


def test_a_dead_nodes_answered_calls_are_handed_over_to_be_hung_up(
        database: Database, writer: DbWriter) -> None:
    """The dialogs noted at answer come back from recovery, through the database, as
    dialogs that continue from the node taking over (its Via, a higher CSeq)."""
    inbound = Dialog(call_id="in-1", local_tag="lt", local_uri="<sip:4930@ss>",
                     remote_uri='"A" <sip:1001@c>', remote_target="sip:1001@198.18.0.9:5070",
                     peer=Peer("udp", "198.18.0.9", 5070), via_host="198.18.1.2:5060",
                     contact="<sip:ss@198.18.1.2>", remote_tag="rt",
                     route_set=["<sip:198.18.0.1;lr>"], local_seq=3)
    for call_id in ("in-1", "ringing"):
        record = _record(call_id)
        record.node = "b"
        note_started(writer, record)
    note_answered(writer, "in-1", T0 + 1, [inbound.to_note()])
    assert writer.flush()
    handed: list[dict[str, object]] = []
    assert recover(database, now=T0 + 5, node="b", hang_up=handed.extend) == 2
    (note,) = handed
    again = Dialog.from_note(note, "198.18.1.3:5060", "<sip:ss@198.18.1.3>")
    assert (again.call_id, again.local_tag, again.remote_tag, again.route_set,
            again.peer, again.local_seq) == ("in-1", "lt", "rt", ["<sip:198.18.0.1;lr>"],
                                             inbound.peer, 3)
    bye = again.create_request("BYE", cseq=103)
    assert bye.get("Route") == "<sip:198.18.0.1;lr>"
    assert bye.top_via.host == "198.18.1.3"
    assert again.next_peer() == Peer("udp", "198.18.0.1", 5060)


def test_a_cdr_with_nul_in_a_header_is_written_with_the_others(database: Database,
                                                              writer: DbWriter) -> None:
    """The SIP parser lets a NUL through (in a Call-ID, a User-Agent); PostgreSQL stores
    U+FFFD for it, and the batch with other calls' CDRs is not lost."""
    attempt = dict.fromkeys(ATTEMPT_COLUMNS) | {"seq": 1, "start_at": T0,
                                                "outcome": "answered"}
    cdrs = CdrWriter(writer)
    cdrs.submit(_record("odd\x00call"), [attempt])
    cdrs.submit(_record("plain"), [attempt])
    assert writer.flush()
    assert writer.failed == 0
    odd = "odd\x00call" if database.kind == "sqlite" else "odd\ufffdcall"
    rows = database.rows("SELECT c.call_id_in, a.seq FROM cdrs c "
                         "JOIN cdr_attempts a ON a.cdr_id = c.id ORDER BY c.id")
    assert rows == [{"call_id_in": odd, "seq": 1}, {"call_id_in": "plain", "seq": 1}]


def test_the_watcher_reloads_what_another_connection_changed(database: Database,
                                                             db_target: str) -> None:
    phones = PhoneDirectory()
    watcher = ConfigWatcher(database)
    watcher.register("phones", phone_accounts, phones.set)
    watcher.load_all()
    assert phones.by_username == {} and not watcher.poll()
    with open_database(db_target) as api:
        api.execute("INSERT INTO phones (username, password, caller_dial_plan) "
                    "VALUES ('1001', 'pw', '0>49')")
    # SQLite sees the commit at once; PostgreSQL's notification takes a moment to arrive.
    deadline = time.monotonic() + 1.0
    while not watcher.poll():
        assert time.monotonic() < deadline, "the change was not seen within a second"
        time.sleep(0.01)
    assert watcher.reloads == 1
    account = phones.get("1001")
    assert account is not None and account.numbers.caller_dial_plan == "0>49"
    assert not watcher.poll()


def test_vendor_registrations_of_enabled_gateways_only(database: Database) -> None:
    for gw_id, enabled in ((1, 1), (2, 0), (3, 1)):
        database.execute(
            "INSERT INTO routing_gateways (id, name, host, port, transport, prefixes, "
            "priority, prefix_mode, enabled) VALUES (?, ?, 'sip.example', ?, 'udp', '[]', 0, "
            "'terminate', ?)", (gw_id, f"v{gw_id}", None if gw_id == 1 else 5070, enabled))
    database.execute_many(
        "INSERT INTO gateway_registrations (routing_gateway_id, enabled, username, password) "
        "VALUES (?, ?, ?, 'pw')", [(1, 1, "u1"), (2, 1, "u2"), (3, 0, "u3")])
    (only,) = vendor_registrations(database)
    assert (only.gateway_id, only.gateway_port, only.username, only.auth_username) == \
        (1, None, "u1", None)


def test_number_tables(database: Database) -> None:
    database.execute("INSERT INTO number_transforms (number, replacement) "
                     "VALUES ('4930', '4931')")
    group = database.insert("INSERT INTO number_groups (name) VALUES ('vip') RETURNING id")
    database.execute("INSERT INTO number_groups (name) VALUES ('empty')")
    database.execute("INSERT INTO number_group_members (group_id, number) VALUES (?, '4930')",
                     (group,))
    assert transform_table(database).apply("4930") == "4931"
    groups = number_groups(database)
    assert set(groups.names) == {"vip", "empty"}
    assert groups.numbers("vip") == {"4930"} and groups.numbers("empty") == frozenset()
