"""``softswitch db copy``: a SQLite installation with every kind of row copied to
PostgreSQL and back, row for row and type for type, ids kept and new ids above them; a
non-empty target, a source at another schema version and a row that cannot be copied are
refused with nothing copied; the source is read as one snapshot while it is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from apitest import auth, make_api

from b2bua.cli import main
from b2bua.storage import audit, crud, migrate, open_database
from b2bua.storage.copy import CopyError, copy_database, leftovers, shown
from b2bua.storage.layout import BOOKKEEPING, layout

Dump = dict[str, list[Any]]  # rows as {column: (type, value)}; versions as (version, name)

# Values that tell types and encodings apart: a float that is not a short decimal,
# placeholder and escape characters in text, text beyond ASCII.
AWKWARD_TEXT = "it's 100% ? \\N \"quoted\" ☎ Grüße\nline two"
FLOAT = 0.1 + 0.2


def populate(tmp_path: Path) -> Path:
    """A SQLite database with rows in every table: configuration through the REST API (which
    also fills the audit log and has made two tokens), and what the engine writes at run
    time (bindings, CDRs with attempts, a crash-recovery note) as its writer would."""
    api = make_api(tmp_path)
    client, headers = api.client, auth(api.admin)

    def call(method: str, url: str, body: dict[str, Any], status: int = 200) -> Any:
        resp = client.open(url, method=method, json=body, headers=headers)
        assert resp.status_code == status, resp.get_data(as_text=True)
        return resp.get_json()

    call("PUT", "/api/v1/parameters/SS_REPLY_UNAUTHORIZED", {"value": "Off"})
    call("PUT", "/api/v1/parameters/SS_SIP_TRACE", {"value": "On"})
    cust = call("POST", "/api/v1/mapping-gateways",
                {"name": "cust-a", "ips": ["127.0.0.2"], "auth_mode": "ip"}, 201)
    trunk = call("POST", "/api/v1/mapping-gateways",
                 {"name": "cust-b", "auth_mode": "password", "username": "cust-b",
                  "password": "Trunk-secret-1", "capacity": 30}, 201)
    gone = call("POST", "/api/v1/mapping-gateways",
                {"name": "cust-gone", "ips": ["127.0.0.9"], "auth_mode": "ip"}, 201)
    assert client.delete(f"/api/v1/mapping-gateways/{gone['id']}",
                         headers=headers).status_code == 204  # a gap in the ids
    vendor = call("POST", "/api/v1/routing-gateways",
                  {"name": "vendor-a", "host": "127.0.0.3", "port": 5070, "prefixes": ["2"]},
                  201)
    call("POST", "/api/v1/routing-gateways",
         {"name": "vendor-b", "host": "sip.example.net", "port": None, "priority": 5,
          "stop_switch_codes": [404, 484]}, 201)
    call("PUT", f"/api/v1/routing-gateways/{vendor['id']}/registration",
         {"username": "acct-7", "password": "Vendor-secret-7", "expire": 300})
    call("POST", "/api/v1/phones",
         {"username": "3001", "password": "Phone-secret-3001", "display_name": AWKWARD_TEXT},
         201)
    call("POST", "/api/v1/number-transforms",
         {"number": "100", "replacement": "200", "memo": "short code"}, 201)
    for name, numbers in (("blocked", ["2001", "2002", "2003"]), ("vip", ["1999", "2001"])):
        group = call("POST", "/api/v1/number-groups", {"name": name}, 201)
        call("POST", f"/api/v1/number-groups/{group['id']}/numbers", {"numbers": numbers})
    call("POST", "/api/v1/operators",  # a web console account (its hash is copied as is)
         {"name": "night-shift", "role": "read", "password": "Console-secret-1"}, 201)
    call("POST", "/api/v1/webhooks",  # a receiver of call events (its secret copied too)
         {"name": "crm", "url": "https://crm.example.net/hooks", "secret": "Webhook-secret-01",
          "events": ["call.end"]}, 201)

    with open_database(api.target) as db:
        db.execute_many(
            "INSERT INTO registrations (username, contact, transport, source_host, "
            "source_port, nat, expires_at, registered_at, user_agent, call_id, path, "
            "mapping_gateway_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [("3001", "sip:3001@192.0.2.7:5062", "udp", "198.51.100.4", 40000, 1,
              1.9e9 + FLOAT, 1.7e9, AWKWARD_TEXT, "reg-1", json.dumps(["<sip:p1;lr>"]), None),
             ("cust-b", "sip:cust-b@198.51.100.9", "tcp", "198.51.100.9", 5060, 0, 1.9e9,
              1.7e9, None, "reg-2", "", trunk["id"])])
        for n, code in enumerate((200, 486, 503), start=1):
            db.execute(
                "INSERT INTO cdrs (call_id_in, call_id_out, caller, callee, source, "
                "mapping_gateway_id, mapping_gateway, routing_gateway_id, routing_gateway, "
                "start_at, answer_at, end_at, duration, final_code, final_reason, hangup_by, "
                "media) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (f"in-{n}", f"out-{n}", "1001", f"200{n}", "127.0.0.2", cust["id"], "cust-a",
                 vendor["id"], "vendor-a", 1.7e9 + n + FLOAT, 1.7e9 + n + 1 if code == 200
                 else None, 1.7e9 + n + 3, 2.0 if code == 200 else 0.0, code, AWKWARD_TEXT,
                 "caller", json.dumps({"relayed": True, "packets": [10, 12]})))
        db.execute_many(
            "INSERT INTO cdr_attempts (cdr_id, seq, routing_gateway_id, routing_gateway, "
            "call_id, start_at, first_provisional_at, first_provisional, final_code, outcome, "
            "duration, target) VALUES ((SELECT id FROM cdrs WHERE call_id_in = ?), ?, ?, ?, "
            "?, ?, ?, ?, ?, ?, ?, ?)",
            [("in-1", 1, vendor["id"], "vendor-a", "a-1", 1.7e9, 1.7e9 + FLOAT, 180, 200,
              "answered", 2.0, "udp:127.0.0.3:5070"),
             ("in-3", 1, vendor["id"], "vendor-a", "a-2", 1.7e9, None, None, 503, "failed",
              None, None),
             ("in-3", 2, None, "vendor-b", "a-3", 1.7e9 + 1, None, None, 408, "timeout", None,
              "udp:203.0.113.5:5060")])
        db.execute("INSERT INTO active_calls (call_id_in, record, start_at, answer_at, node, "
                   "dialogs) VALUES (?, ?, ?, ?, ?, ?)",
                   ("in-9", json.dumps({"call_id_in": "in-9", "caller": "1001"}), 1.7e9, 1.8e9,
                    "n1", json.dumps([{"call_id": "in-9", "local_tag": "t"}])))
        db.execute("INSERT INTO cluster_secrets (name, value) VALUES (?, ?)",
                   ("nonce", "00" * 32))
        db.execute("INSERT INTO cluster_nodes (name, sip, api, started_at) "
                   "VALUES (?, ?, ?, ?)", ("n1", "198.18.1.1:5060", "127.0.0.1:8088", 1.7e9))
        db.execute("INSERT INTO gateway_stats (kind, gateway_id, step, period_at, attempts, "
                   "answered, ner, talk, pdd_seconds, pdd, failures) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   ("routing", vendor["id"], 60, 1_700_000_040, 3, 1, 2, 2.0, 0.93,
                    '{"310": 2, "320": 1}', '{"503": 1, "486": 1}'))
        db.execute("INSERT INTO stats_progress (name, last_id) VALUES (?, ?)",
                   ("gateway_stats", 3))
    return Path(api.target)


def dump(target: str | Path) -> Dump:
    """Every table's rows, each value with its Python type (an int where a float belongs
    differs), sorted by key; ``schema_migrations`` as its versions and names."""
    dumped: Dump = {}
    with open_database(target) as db:
        for table in layout().tables:
            rows = db.rows(f"SELECT * FROM {table.name}")
            keyed = sorted((tuple(r[k] for k in table.key), r) for r in rows)
            dumped[table.name] = [{k: (type(v).__name__, v) for k, v in r.items()}
                                  for _, r in keyed]
        dumped[BOOKKEEPING] = sorted(
            (r["version"], r["name"]) for r in db.rows(f"SELECT * FROM {BOOKKEEPING}"))
    return dumped


def counts(dumped: Dump) -> dict[str, int]:
    return {table: len(rows) for table, rows in dumped.items() if table != BOOKKEEPING}


def max_id(target: str | Path, table: str) -> int:
    with open_database(target) as db:
        return int(db.value(f"SELECT MAX(id) AS m FROM {table}"))


def counter(target: str | Path, table: str) -> int:
    with open_database(target) as db:
        return int(db.value("SELECT version FROM config_versions WHERE table_name = ?",
                            (table,)))


def add_gateway(target: str | Path, name: str) -> int:
    with open_database(target) as db:
        return crud.insert(db, "mapping_gateways",
                           {"name": name, "auth_mode": "ip", "ips": '["192.0.2.1"]'})


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return populate(tmp_path)


def test_copy_to_postgresql_and_back(tmp_path: Path, source: Path, pg_url: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    before = dump(source)
    assert all(before.values()), {t: n for t, n in counts(before).items() if not n}

    assert main(["db", "copy", "--from", str(source), "--to", pg_url]) == 0
    summary = capsys.readouterr().out.splitlines()
    for table, rows in counts(before).items():
        assert any(line.split() == [table, str(rows)] for line in summary), (table, summary)
    copied = dump(pg_url)
    assert copied == before
    assert dump(source) == before  # only read

    # New rows on the target are numbered after the copied ones, and the config triggers
    # count again (the counters went over as the source's).
    gateways = counter(pg_url, "mapping_gateways")
    new_id = add_gateway(pg_url, "cust-new")
    assert new_id == max(r["id"][1] for r in before["mapping_gateways"]) + 1
    assert counter(pg_url, "mapping_gateways") == gateways + 1
    with open_database(pg_url) as db:
        audit.record(db, "test", "create", "mapping-gateways/cust-new")
        cdr = db.insert("INSERT INTO cdrs (call_id_in, start_at, end_at, final_code) "
                        "VALUES ('in-new', 1, 2, 200) RETURNING id")
    assert max_id(pg_url, "audit_log") == len(before["audit_log"]) + 1
    assert cdr == len(before["cdrs"]) + 1
    after = dump(pg_url)
    assert counts(after)["mapping_gateways"] == counts(before)["mapping_gateways"] + 1

    back = tmp_path / "back" / "softswitch.db"
    assert main(["db", "copy", "--from", pg_url, "--to", f"sqlite:///{back}"]) == 0
    assert dump(back) == after
    assert add_gateway(back, "cust-newer") == new_id + 1


def test_batches_page_every_kind_of_key(tmp_path: Path, source: Path, pg_url: str) -> None:
    """Batches of two: integer ids, text keys (parameters, config_versions) and the
    composite key of the group members cross batch boundaries both ways."""
    before = dump(source)
    assert len(before["number_group_members"]) == 5 and len(before["parameters"]) == 2
    copy_database(source, pg_url, batch=2)
    assert dump(pg_url) == before
    back = tmp_path / "back.db"
    assert copy_database(pg_url, back, batch=3) == counts(before)
    assert dump(back) == before


def test_tables_go_parents_first_and_counters_last() -> None:
    order = [t.name for t in layout().tables]
    assert order.index("cdrs") < order.index("cdr_attempts")
    assert order.index("number_groups") < order.index("number_group_members")
    assert order.index("routing_gateways") < order.index("gateway_registrations")
    assert order[-1] == "config_versions"
    with open_database(":memory:") as fresh:
        migrate.migrate(fresh)
        assert sorted([*order, BOOKKEEPING]) == fresh.tables()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_source_is_read_as_one_snapshot(tmp_path: Path, source: Path, kind: str,
                                            request: pytest.FixtureRequest) -> None:
    """Rows the running softswitch writes once the copy has begun are not copied, and the
    counts still agree: every table is read as of the copy's first read."""
    if kind == "postgresql":
        url: str | Path = request.getfixturevalue("pg_url")
        copy_database(source, url)
    else:
        url = source
    expected = dump(url)
    written: list[str] = []

    def write_meanwhile(table: str, _rows: int) -> None:
        if written:
            return
        with open_database(url) as db:
            db.execute("INSERT INTO cdrs (call_id_in, start_at, end_at, final_code) "
                       "VALUES ('late', 1, 2, 200)")
            db.execute("DELETE FROM number_group_members WHERE number = '2003'")
        written.append(table)

    target = tmp_path / "copy.db"
    copy_database(url, target, progress=write_meanwhile)
    assert written == [layout().tables[0].name]
    assert dump(target) == expected
    assert counts(dump(url))["cdrs"] == counts(expected)["cdrs"] + 1


def test_a_non_empty_target_is_refused_and_left_as_it_was(
        tmp_path: Path, source: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "copy", "--from", str(source), "--to", pg_url]) == 0
    held = dump(pg_url)
    capsys.readouterr()
    assert main(["db", "copy", "--from", str(source), "--to", pg_url]) == 1
    err = capsys.readouterr().err
    assert "the target is not empty" in err and "mapping_gateways" in err, err
    assert dump(pg_url) == held

    # A target at an older version holding a phone: refused before it is migrated.
    older = tmp_path / "older.db"
    with open_database(older) as db:
        migrate.migrate(db, 12)
        crud.insert(db, "phones", {"username": "4001", "password": "p"})
    assert main(["db", "copy", "--from", str(source), "--to", str(older)]) == 1
    assert "phones" in capsys.readouterr().err
    with open_database(older) as db:
        assert migrate.current_version(db) == 12


def test_a_target_only_migrated_is_empty_even_with_counters_moved(
        tmp_path: Path, source: Path) -> None:
    target = tmp_path / "migrated.db"
    with open_database(target) as db:
        migrate.migrate(db)
        crud.delete(db, "phones", crud.insert(db, "phones", {"username": "x", "password": "p"}))
        assert leftovers(db, layout()) == []
        tokens_table = layout().table("api_tokens")
        assert tokens_table.auto_id and not tokens_table.seeded
    assert counter(target, "phones") == 2
    assert main(["db", "copy", "--from", str(source), "--to", str(target)]) == 0
    assert dump(target) == dump(source)  # the counters are the source's


def test_a_source_at_another_schema_version_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "target.db"

    def refused(source: Path, code: int) -> str:
        assert main(["db", "copy", "--from", str(source), "--to", str(target)]) == code
        assert not target.exists()  # refused before the target is opened
        return capsys.readouterr().err

    older = tmp_path / "older.db"
    with open_database(older) as db:
        migrate.migrate(db, 12)
    err = refused(older, 1)
    assert "schema version 12" in err and f"softswitch migrate --db {older}" in err, err

    newer = tmp_path / "newer.db"
    with open_database(newer) as db:
        migrate.migrate(db)
        db.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                   "VALUES (?, 'm_future', 0)", (migrate.latest_version() + 1,))
    assert "newer than this softswitch" in refused(newer, 3)

    bare = tmp_path / "bare.db"
    open_database(bare).close()
    assert "no softswitch schema" in refused(bare, 1)
    assert "no database file" in refused(tmp_path / "missing.db", 1)
    assert "the same database" in refused(target, 1)


def test_a_row_that_cannot_be_copied_rolls_everything_back(
        tmp_path: Path, source: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite keeps text in an INTEGER column; PostgreSQL would refuse it, and would round
    a fraction into a bigint: both are stopped with the row named, nothing copied."""
    with open_database(source) as db:
        db.execute("UPDATE cdrs SET final_code = 'busy' WHERE call_id_in = 'in-2'")
    assert main(["db", "copy", "--from", str(source), "--to", pg_url]) == 1
    err = capsys.readouterr().err
    assert "cdrs.final_code" in err and "'busy'" in err and "nothing was copied" in err, err
    with open_database(pg_url) as db:
        assert leftovers(db, layout()) == []  # api_tokens and audit_log went before cdrs

    with open_database(source) as db:
        db.execute("UPDATE cdrs SET final_code = 486 WHERE call_id_in = 'in-2'")
        db.execute("UPDATE phones SET capacity = 2.5")
    with pytest.raises(CopyError, match=r"phones\.capacity .* 2\.5"):
        copy_database(source, pg_url)
    with open_database(source) as db:
        db.execute("UPDATE phones SET capacity = 4")
        db.execute("UPDATE registrations SET expires_at = 'soon' WHERE username = '3001'")
    with pytest.raises(CopyError, match=r"registrations\.expires_at .*'soon'.*\(real\)"):
        copy_database(source, pg_url)

    # What the target database refuses (an attempt whose CDR is gone) ends the same way.
    with open_database(source) as db:
        db.execute("UPDATE registrations SET expires_at = 1.9e9 WHERE username = '3001'")
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("DELETE FROM cdrs WHERE call_id_in = 'in-3'")
    assert main(["db", "copy", "--from", str(source), "--to", pg_url]) == 1
    assert "cdr_attempts" in capsys.readouterr().err
    with open_database(pg_url) as db:
        assert leftovers(db, layout()) == []

    with open_database(source) as db:
        db.execute("DELETE FROM cdr_attempts WHERE cdr_id NOT IN (SELECT id FROM cdrs)")
    assert main(["db", "copy", "--from", str(source), "--to", pg_url]) == 0
    assert dump(pg_url) == dump(source)


@pytest.mark.parametrize(("given", "printed"), [
    ("postgresql://ss:s3cret@db.example.net:5433/softswitch",
     "postgresql://ss:***@db.example.net:5433/softswitch"),
    ("postgresql://ss@db.example.net/softswitch", "postgresql://ss@db.example.net/softswitch"),
    ("sqlite:///var/softswitch.db", "var/softswitch.db"),
])
def test_a_password_is_never_printed(given: str, printed: str) -> None:
    assert shown(given) == printed



def test_rows_a_copy_would_miss_fail_the_count_check(tmp_path: Path, source: Path) -> None:
    """SQLite lets a composite primary key hold NULL, which no key comes after: paging one
    row at a time skips the rest of its group. The count check sees the rows left behind."""
    with open_database(source) as db:
        db.execute("INSERT INTO number_group_members (group_id, number) VALUES (1, NULL)")
    target = tmp_path / "copy.db"
    with pytest.raises(CopyError, match=r"row counts differ: number_group_members: "
                                        r"source 6, copied 3, target 3"):
        copy_database(source, target, batch=1)
    with open_database(target) as db:
        assert leftovers(db, layout()) == []
