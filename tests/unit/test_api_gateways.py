"""Mapping and routing gateways over the REST API: CRUD, validation, auth, audit, versions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apitest import assert_problem, auth, make_api
from flask.testing import FlaskClient

from b2bua.storage import open_database

pytestmark = pytest.mark.both_backends

SECRET = "Sup3r-s3cret-digest-pw"


@dataclass(frozen=True)
class Env:
    client: FlaskClient
    admin: str
    reader: str
    target: str  # the database


@dataclass(frozen=True)
class Kind:
    """One gateway resource: where it lives and what its bodies look like."""

    url: str
    table: str
    minimal: dict[str, Any]  # the smallest valid POST body
    defaults: dict[str, Any]  # what the server fills in for ``minimal``
    full: dict[str, Any]  # a valid body with every optional field away from its default
    patch: dict[str, Any]  # a PATCH that changes a single field

    @property
    def resource(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def body(self, name: str, **extra: Any) -> dict[str, Any]:
        return {**self.minimal, "name": name, **extra}


NUMBER_DEFAULTS = {
    "caller_dial_plan": "", "callee_dial_plan": "", "caller_transform": False,
    "callee_transform": False, "caller_groups": [], "caller_groups_mode": "deny",
    "callee_groups": [], "callee_groups_mode": "deny",
    "media_relay": "auto", "rtp_encryption": False, "media_check": "none",
}

MAPPING = Kind(
    url="/api/v1/mapping-gateways",
    table="mapping_gateways",
    minimal={"name": "cust-a", "ips": ["192.0.2.10"]},
    defaults={"auth_mode": "ip", "port": None, "username": None, "capacity": None,
              "enabled": True, **NUMBER_DEFAULTS, "callee_prefixes_allow": [],
              "callee_prefixes_deny": [], "call_rate": None, "call_rate_burst": None,
              "call_rate_code": 503, "max_duration": None, "max_duration_upper": None,
              "failure_codes": {}},
    full={"name": "cust-a", "auth_mode": "ip_port", "ips": ["192.0.2.10", "2001:db8::7"],
          "port": 5070, "capacity": 30, "enabled": False, "call_rate": 2.5,
          "call_rate_burst": 4, "call_rate_code": 480, "max_duration": 60,
          "max_duration_upper": 90, "failure_codes": {"5xx": 503, "404": 480}},
    patch={"capacity": 12},
)

ROUTING = Kind(
    url="/api/v1/routing-gateways",
    table="routing_gateways",
    minimal={"name": "vend-a", "host": "198.51.100.7"},
    defaults={"port": 5060, "transport": "udp", "prefixes": [], "priority": 0,
              "prefix_mode": "terminate", "capacity": None, "enabled": True,
              "invite_timeout": 0, "trying_timeout": 0, "session_progress_timeout": 0,
              "session_progress_sdp_timeout": 0, "ringing_timeout": 0,
              "stop_switch_after_invite_timeout": None, "stop_switch_after_sdp": None,
              "stop_switch_after_rtp_start": None, "stop_switch_after_busy": None,
              "switch_after_ringing": True, "stop_switch_codes": [], **NUMBER_DEFAULTS,
              "pai_dial_plan": "", "call_rate": None, "call_rate_burst": None, "weight": None,
              "periods": []},
    full={"name": "vend-a", "host": "2001:db8::99", "port": 5080, "transport": "tcp",
          "prefixes": ["44", "+1", "9#*A"], "priority": 7, "prefix_mode": "continue",
          "capacity": 100, "enabled": False, "call_rate": 5.0, "call_rate_burst": 2,
          "weight": 70, "periods": [{"days": ["mon", "fri"], "begin": "08:00",
                                     "end": "18:00", "priority": 2, "capacity": None}]},
    patch={"priority": 3},
)

KINDS = pytest.mark.parametrize("kind", [MAPPING, ROUTING], ids=["mapping", "routing"])


@pytest.fixture
def env(tmp_path: Path, backend_db: str | None) -> Iterator[Env]:
    setup = make_api(tmp_path, backend_db)
    yield Env(setup.client, setup.admin, setup.reader, setup.target)


def query(target: str, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with open_database(target) as database:
        return database.rows(sql, args)


def stored(env: Env, kind: Kind, item_id: int) -> dict[str, Any] | None:
    found = query(env.target, f"SELECT * FROM {kind.table} WHERE id = ?", (item_id,))
    return found[0] if found else None


def version(env: Env, table: str) -> int:
    found = query(env.target, "SELECT version FROM config_versions WHERE table_name = ?", (table,))
    return int(found[0]["version"])


def audit_rows(env: Env) -> list[dict[str, Any]]:
    return query(env.target, "SELECT * FROM audit_log ORDER BY id")


def snapshot(env: Env, kind: Kind) -> tuple[list[dict[str, Any]], int, int]:
    """Everything a write could touch: the table's raw rows, its version, the audit log."""
    table_rows = query(env.target, f"SELECT * FROM {kind.table} ORDER BY id")
    return table_rows, version(env, kind.table), len(audit_rows(env))


def create(env: Env, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    resp = env.client.post(kind.url, json=body, headers=auth(env.admin))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    created: dict[str, Any] = resp.get_json()
    return created


def password_gateway(env: Env, name: str = "cust-pw") -> dict[str, Any]:
    return create(env, MAPPING, {"name": name, "auth_mode": "password", "username": "alice",
                                 "password": SECRET})


# --- create, get ---------------------------------------------------------------------


@KINDS
def test_create_fills_in_defaults_and_get_returns_the_same(env: Env, kind: Kind) -> None:
    resp = env.client.post(kind.url, json=kind.minimal, headers=auth(env.admin))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.content_type == "application/json"
    item = resp.get_json()
    assert isinstance(item["id"], int) and item["id"] > 0
    assert isinstance(item["created_at"], float) and item["created_at"] == item["updated_at"]
    expected = {**kind.minimal, **kind.defaults}
    assert {k: v for k, v in item.items() if k not in ("id", "created_at", "updated_at")} \
        == expected
    assert "password" not in item
    got = env.client.get(f"{kind.url}/{item['id']}", headers=auth(env.admin))
    assert got.status_code == 200 and got.get_json() == item


@KINDS
def test_create_with_every_field_set_keeps_them(env: Env, kind: Kind) -> None:
    item = create(env, kind, kind.full)
    assert {k: item[k] for k in kind.full} == kind.full


def test_create_password_gateway_hides_the_password(env: Env) -> None:
    item = password_gateway(env)
    assert item["auth_mode"] == "password" and item["username"] == "alice"
    assert item["ips"] == [] and "password" not in item
    row = stored(env, MAPPING, item["id"])
    assert row is not None and row["password"]


@KINDS
def test_name_of_64_characters_is_accepted(env: Env, kind: Kind) -> None:
    item = create(env, kind, kind.body("n" * 64))
    assert item["name"] == "n" * 64


@KINDS
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_unknown_id_is_404(env: Env, kind: Kind, method: str) -> None:
    resp = env.client.open(f"{kind.url}/4242", method=method.upper(), json=kind.minimal,
                           headers=auth(env.admin))
    assert_problem(resp, 404)


# --- list ----------------------------------------------------------------------------


@KINDS
@pytest.mark.parametrize("count", [6, 7])
def test_list_pages_through_every_item_once_in_id_order(
    env: Env, kind: Kind, count: int
) -> None:
    ids = [create(env, kind, kind.body(f"gw-{i:02d}"))["id"] for i in range(count)]
    # delete one in the middle so the ids have a gap
    assert env.client.delete(f"{kind.url}/{ids[2]}", headers=auth(env.admin)).status_code \
        == 204
    del ids[2]
    seen: list[int] = []
    pages = 0
    after: int | None = 0
    while after is not None:
        resp = env.client.get(f"{kind.url}?limit=2&after_id={after}", headers=auth(env.admin))
        assert resp.status_code == 200
        page = resp.get_json()
        assert set(page) == {"items", "next_after_id"}
        assert 1 <= len(page["items"]) <= 2
        pages += 1
        seen += [item["id"] for item in page["items"]]
        after = page["next_after_id"]
        if after is not None:
            assert after == page["items"][-1]["id"]
    assert seen == sorted(ids)
    assert pages == (len(ids) + 1) // 2
    everything = env.client.get(kind.url, headers=auth(env.admin)).get_json()
    assert [item["id"] for item in everything["items"]] == sorted(ids)
    assert everything["next_after_id"] is None
    assert all("password" not in item for item in everything["items"])


@KINDS
def test_list_after_the_last_id_is_empty(env: Env, kind: Kind) -> None:
    last = create(env, kind, kind.minimal)["id"]
    page = env.client.get(f"{kind.url}?after_id={last}", headers=auth(env.admin)).get_json()
    assert page == {"items": [], "next_after_id": None}
    empty = env.client.get(f"{kind.url}?limit=1000", headers=auth(env.admin)).get_json()
    assert [item["id"] for item in empty["items"]] == [last]


@KINDS
@pytest.mark.parametrize(
    ("query_string", "field"),
    [("limit=0", "limit"), ("limit=abc", "limit"), ("limit=1001", "limit"),
     ("limit=-5", "limit"), ("limit=2.5", "limit"), ("limit=", "limit"),
     ("after_id=-1", "after_id"), ("after_id=x", "after_id")],
)
def test_bad_paging_arguments_are_422(
    env: Env, kind: Kind, query_string: str, field: str
) -> None:
    problem = assert_problem(
        env.client.get(f"{kind.url}?{query_string}", headers=auth(env.admin)), 422
    )
    assert field in problem["errors"]


@KINDS
def test_openapi_documents_the_list_parameters_and_their_422(env: Env, kind: Kind) -> None:
    spec = env.client.get("/api/v1/openapi.json", headers=auth(env.admin)).get_json()
    get = spec["paths"][kind.url]["get"]
    assert {"limit", "after_id"} <= {p["name"] for p in get["parameters"]}
    # a bad limit or after_id answers 422, so the document must say so
    assert "422" in get["responses"], sorted(get["responses"])


# --- PUT -----------------------------------------------------------------------------


@KINDS
def test_put_replaces_and_omitted_fields_return_to_defaults(env: Env, kind: Kind) -> None:
    item = create(env, kind, kind.full)
    body = kind.body("renamed")
    resp = env.client.put(f"{kind.url}/{item['id']}", json=body, headers=auth(env.admin))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    replaced = resp.get_json()
    assert replaced["id"] == item["id"] and replaced["created_at"] == item["created_at"]
    assert replaced["updated_at"] >= item["updated_at"]
    assert {k: v for k, v in replaced.items() if k not in ("id", "created_at", "updated_at")} \
        == {**body, **kind.defaults}
    got = env.client.get(f"{kind.url}/{item['id']}", headers=auth(env.admin)).get_json()
    assert got == replaced


def test_put_without_password_keeps_the_stored_password(env: Env) -> None:
    item = password_gateway(env)
    before = stored(env, MAPPING, item["id"])
    assert before is not None
    env.client.patch(f"{MAPPING.url}/{item['id']}", json={"capacity": 4},
                     headers=auth(env.admin))
    body = {"name": "cust-pw", "auth_mode": "password", "username": "bob"}
    resp = env.client.put(f"{MAPPING.url}/{item['id']}", json=body, headers=auth(env.admin))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    replaced = resp.get_json()
    assert replaced["username"] == "bob" and replaced["capacity"] is None
    assert "password" not in replaced
    after = stored(env, MAPPING, item["id"])
    assert after is not None and after["password"] == before["password"]


def test_put_with_a_new_password_replaces_it(env: Env) -> None:
    item = password_gateway(env)
    before = stored(env, MAPPING, item["id"])
    body = {"name": "cust-pw", "auth_mode": "password", "username": "alice",
            "password": "another-pw"}
    resp = env.client.put(f"{MAPPING.url}/{item['id']}", json=body, headers=auth(env.admin))
    assert resp.status_code == 200 and "password" not in resp.get_json()
    after = stored(env, MAPPING, item["id"])
    assert before is not None and after is not None
    assert after["password"] and after["password"] != before["password"]


def test_put_into_password_mode_needs_a_password(env: Env) -> None:
    item = create(env, MAPPING, MAPPING.minimal)
    before = snapshot(env, MAPPING)
    body = {"name": "cust-a", "auth_mode": "password", "username": "alice"}
    problem = assert_problem(
        env.client.put(f"{MAPPING.url}/{item['id']}", json=body, headers=auth(env.admin)), 422
    )
    assert "password" in problem["errors"]
    assert snapshot(env, MAPPING) == before


@pytest.mark.parametrize(
    ("kind", "missing"),
    [(MAPPING, "name"), (ROUTING, "name"), (ROUTING, "host")],
    ids=["mapping-name", "routing-name", "routing-host"],
)
def test_put_without_a_required_field_is_422(env: Env, kind: Kind, missing: str) -> None:
    item = create(env, kind, kind.minimal)
    before = snapshot(env, kind)
    body = {k: v for k, v in kind.minimal.items() if k != missing}
    problem = assert_problem(
        env.client.put(f"{kind.url}/{item['id']}", json=body, headers=auth(env.admin)), 422
    )
    assert missing in problem["errors"]
    assert snapshot(env, kind) == before


# --- PATCH ---------------------------------------------------------------------------


@KINDS
def test_patch_changes_only_the_given_fields(env: Env, kind: Kind) -> None:
    item = create(env, kind, kind.full)
    other = create(env, kind, kind.body("bystander"))
    resp = env.client.patch(f"{kind.url}/{item['id']}", json=kind.patch,
                            headers=auth(env.admin))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    patched = resp.get_json()
    assert patched["updated_at"] >= item["updated_at"]
    assert {k: v for k, v in patched.items() if k != "updated_at"} \
        == {**{k: v for k, v in item.items() if k != "updated_at"}, **kind.patch}
    assert env.client.get(f"{kind.url}/{item['id']}", headers=auth(env.admin)).get_json() \
        == patched
    assert env.client.get(f"{kind.url}/{other['id']}", headers=auth(env.admin)).get_json() \
        == other


def test_patch_of_a_password_gateway_keeps_the_password(env: Env) -> None:
    item = password_gateway(env)
    before = stored(env, MAPPING, item["id"])
    resp = env.client.patch(f"{MAPPING.url}/{item['id']}", json={"username": "carol"},
                            headers=auth(env.admin))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["username"] == "carol" and "password" not in resp.get_json()
    after = stored(env, MAPPING, item["id"])
    assert before is not None and after is not None
    assert after["password"] == before["password"]


def test_patch_switching_auth_mode_is_checked_against_stored_fields(env: Env) -> None:
    item = create(env, MAPPING, MAPPING.minimal)
    url = f"{MAPPING.url}/{item['id']}"
    assert "port" in assert_problem(
        env.client.patch(url, json={"auth_mode": "ip_port"}, headers=auth(env.admin)), 422
    )["errors"]
    resp = env.client.patch(url, json={"auth_mode": "ip_port", "port": 5062},
                            headers=auth(env.admin))
    assert resp.status_code == 200
    assert (resp.get_json()["auth_mode"], resp.get_json()["port"]) == ("ip_port", 5062)
    resp = env.client.patch(url, json={"auth_mode": "password", "username": "u",
                                       "password": "pw"}, headers=auth(env.admin))
    assert resp.status_code == 200 and resp.get_json()["auth_mode"] == "password"


# --- DELETE --------------------------------------------------------------------------


@KINDS
def test_delete_then_get_is_404(env: Env, kind: Kind) -> None:
    item = create(env, kind, kind.minimal)
    keep = create(env, kind, kind.body("keep-me"))
    resp = env.client.delete(f"{kind.url}/{item['id']}", headers=auth(env.admin))
    assert resp.status_code == 204 and resp.get_data() == b""
    assert_problem(env.client.get(f"{kind.url}/{item['id']}", headers=auth(env.admin)), 404)
    assert_problem(env.client.delete(f"{kind.url}/{item['id']}", headers=auth(env.admin)), 404)
    assert stored(env, kind, item["id"]) is None
    listed = env.client.get(kind.url, headers=auth(env.admin)).get_json()["items"]
    assert [i["id"] for i in listed] == [keep["id"]]


# --- duplicate names -----------------------------------------------------------------


@KINDS
def test_duplicate_name_is_409_and_nothing_changes(env: Env, kind: Kind) -> None:
    first = create(env, kind, kind.body("taken"))
    second = create(env, kind, kind.body("free"))
    before = snapshot(env, kind)
    attempts = [
        env.client.post(kind.url, json=kind.body("taken"), headers=auth(env.admin)),
        env.client.put(f"{kind.url}/{second['id']}", json=kind.body("taken"),
                       headers=auth(env.admin)),
        env.client.patch(f"{kind.url}/{second['id']}", json={"name": "taken"},
                         headers=auth(env.admin)),
    ]
    for resp in attempts:
        problem = assert_problem(resp, 409)
        assert "name" in problem["errors"]
    assert snapshot(env, kind) == before
    # renaming an item to its own name is not a conflict
    resp = env.client.patch(f"{kind.url}/{first['id']}", json={"name": "taken"},
                            headers=auth(env.admin))
    assert resp.status_code == 200


# --- validation ----------------------------------------------------------------------

IP4 = ["192.0.2.10"]

MAPPING_BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"name": "m", "ips": ["300.1.1.1"]}, "ips"),
    ({"name": "m", "ips": ["192.0.2.10", "not-an-ip"]}, "ips"),
    ({"name": "m", "ips": ["192.0.2.0/24"]}, "ips"),
    ({"name": "m", "ips": "192.0.2.10"}, "ips"),
    ({"name": "m", "ips": [17]}, "ips"),
    ({"name": "m", "ips": None}, "ips"),
    ({"name": "m", "auth_mode": "ip_port", "ips": IP4, "port": 0}, "port"),
    ({"name": "m", "auth_mode": "ip_port", "ips": IP4, "port": 70000}, "port"),
    ({"name": "m", "auth_mode": "ip_port", "ips": IP4, "port": "five"}, "port"),
    ({"name": "m", "auth_mode": "ip_port", "ips": IP4, "port": 5060.5}, "port"),
    ({"name": "m", "auth_mode": "x", "ips": IP4}, "auth_mode"),
    ({"name": "m", "auth_mode": None, "ips": IP4}, "auth_mode"),
    ({"name": "m"}, "ips"),
    ({"name": "m", "ips": []}, "ips"),
    ({"name": "m", "auth_mode": "ip_port", "ips": []}, "ips"),
    ({"name": "m", "auth_mode": "ip_port", "ips": IP4}, "port"),
    ({"name": "m", "auth_mode": "password", "password": "pw"}, "username"),
    ({"name": "m", "auth_mode": "password", "username": "u"}, "password"),
    ({"name": "m", "auth_mode": "password", "username": "u", "password": None}, "password"),
    ({"name": "m", "auth_mode": "password", "username": "u", "password": ""}, "password"),
    ({"name": "m", "auth_mode": "password", "username": "u", "password": "p" * 129},
     "password"),
    ({"name": "m", "auth_mode": "password", "username": "", "password": "pw"}, "username"),
    ({"name": "m", "ips": IP4, "capacity": -1}, "capacity"),
    ({"name": "m", "ips": IP4, "capacity": "many"}, "capacity"),
    ({"name": "m", "ips": IP4, "enabled": "maybe"}, "enabled"),
    ({"name": "", "ips": IP4}, "name"),
    ({"name": "n" * 65, "ips": IP4}, "name"),
    ({"name": None, "ips": IP4}, "name"),
    ({"name": 42, "ips": IP4}, "name"),
    ({"ips": IP4}, "name"),
    ({"name": "m", "ips": IP4, "colour": "red"}, "colour"),
    ({"name": "m", "ips": IP4, "id": 99}, "id"),
    ({"name": "m", "ips": IP4, "created_at": 1.0}, "created_at"),
    ({"name": "m", "ips": IP4, "call_rate": -1}, "call_rate"),
    ({"name": "m", "ips": IP4, "call_rate_code": 200}, "call_rate_code"),
    ({"name": "m", "ips": IP4, "max_duration": -1}, "max_duration"),
    ({"name": "m", "ips": IP4, "max_duration_upper": 90}, "max_duration_upper"),
    ({"name": "m", "ips": IP4, "max_duration": 90, "max_duration_upper": 60},
     "max_duration_upper"),
    ({"name": "m", "ips": IP4, "failure_codes": {"5x": 503}}, "failure_codes"),
    ({"name": "m", "ips": IP4, "failure_codes": {"404": 200}}, "failure_codes"),
    ({"name": "m", "ips": IP4, "failure_codes": {"404": "480"}}, "failure_codes"),
    ({"name": "m", "ips": IP4, "failure_codes": ["404:480"]}, "failure_codes"),
]

ROUTING_BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"name": "r", "host": "10.0.0.256"}, "host"),
    ({"name": "r", "host": "vendor..example.com"}, "host"),
    ({"name": "r", "host": "-vendor.example.com"}, "host"),
    ({"name": "r", "host": "sip vendor.example.com"}, "host"),
    ({"name": "r", "host": "10.0.0"}, "host"),
    ({"name": "r", "host": "x" * 64 + ".example.com"}, "host"),
    ({"name": "r", "host": " 10.0.0.1"}, "host"),
    ({"name": "r", "host": ""}, "host"),
    ({"name": "r", "host": ["10.0.0.1"]}, "host"),
    ({"name": "r"}, "host"),
    ({"name": "r", "host": "10.0.0.1", "port": 0}, "port"),
    ({"name": "r", "host": "10.0.0.1", "port": 70000}, "port"),
    ({"name": "r", "host": "10.0.0.1", "port": "5060"}, "port"),
    ({"name": "r", "host": "10.0.0.1", "port": 5060.5}, "port"),
    ({"name": "r", "host": "10.0.0.1", "transport": "sctp"}, "transport"),
    ({"name": "r", "host": "10.0.0.1", "transport": "UDP"}, "transport"),
    ({"name": "r", "host": "10.0.0.1", "prefixes": ["12 34"]}, "prefixes"),
    ({"name": "r", "host": "10.0.0.1", "prefixes": [" 44"]}, "prefixes"),
    ({"name": "r", "host": "10.0.0.1", "prefixes": ["123\n"]}, "prefixes"),
    ({"name": "r", "host": "10.0.0.1", "prefixes": [""]}, "prefixes"),
    ({"name": "r", "host": "10.0.0.1", "prefixes": ["1" * 33]}, "prefixes"),
    ({"name": "r", "host": "10.0.0.1", "prefixes": ["44-1"]}, "prefixes"),
    ({"name": "r", "host": "10.0.0.1", "prefixes": "44"}, "prefixes"),
    ({"name": "r", "host": "10.0.0.1", "prefixes": [44]}, "prefixes"),
    ({"name": "r", "host": "10.0.0.1", "priority": -1}, "priority"),
    ({"name": "r", "host": "10.0.0.1", "priority": "high"}, "priority"),
    ({"name": "r", "host": "10.0.0.1", "prefix_mode": "stop"}, "prefix_mode"),
    ({"name": "r", "host": "10.0.0.1", "capacity": -1}, "capacity"),
    ({"name": "r", "host": "10.0.0.1", "enabled": "maybe"}, "enabled"),
    ({"name": "", "host": "10.0.0.1"}, "name"),
    ({"name": "n" * 65, "host": "10.0.0.1"}, "name"),
    ({"name": ["r"], "host": "10.0.0.1"}, "name"),
    ({"host": "10.0.0.1"}, "name"),
    ({"name": "r", "host": "10.0.0.1", "colour": 5}, "colour"),
    ({"name": "r", "host": "10.0.0.1", "weight": -1}, "weight"),
    ({"name": "r", "host": "10.0.0.1", "weight": 1.5}, "weight"),
    ({"name": "r", "host": "10.0.0.1", "call_rate": 0}, "call_rate"),
    ({"name": "r", "host": "10.0.0.1", "call_rate": "fast"}, "call_rate"),
    ({"name": "r", "host": "10.0.0.1", "call_rate_burst": 3}, "call_rate_burst"),
    ({"name": "r", "host": "10.0.0.1", "call_rate": 5, "call_rate_burst": 0},
     "call_rate_burst"),
    ({"name": "r", "host": "10.0.0.1", "periods": [{"days": ["mon"], "begin": "9:00",
                                                    "end": "08:00"}]}, "periods"),
    ({"name": "r", "host": "10.0.0.1", "periods": [{"days": ["monday"], "begin": "08:00",
                                                    "end": "09:00"}]}, "periods"),
    ({"name": "r", "host": "10.0.0.1", "periods": [{"days": ["mon"], "begin": "08:00",
                                                    "end": "09:00", "colour": 1}]}, "periods"),
    ({"name": "r", "host": "10.0.0.1", "periods": {"days": ["mon"]}}, "periods"),
    ({"name": "r", "host": "10.0.0.1", "id": 99}, "id"),
]


def _case_id(index: int, body: dict[str, Any], field: str) -> str:
    shown = json.dumps(body[field]) if field in body else "missing"
    return f"{index:02d}-{field}={shown[:24]}"


def _bad_creates() -> list[Any]:
    return [
        pytest.param(kind, body, field, id=f"{kind.resource}-{_case_id(i, body, field)}")
        for kind, cases in ((MAPPING, MAPPING_BAD_CREATES), (ROUTING, ROUTING_BAD_CREATES))
        for i, (body, field) in enumerate(cases)
    ]


@pytest.mark.parametrize(("kind", "body", "field"), _bad_creates())
def test_invalid_create_is_422_naming_the_field_and_stores_nothing(
    env: Env, kind: Kind, body: dict[str, Any], field: str
) -> None:
    create(env, kind, kind.body("existing"))
    before = snapshot(env, kind)
    problem = assert_problem(env.client.post(kind.url, json=body, headers=auth(env.admin)), 422)
    assert field in problem["errors"], problem
    assert snapshot(env, kind) == before


MAPPING_BAD_PATCHES: list[tuple[dict[str, Any], str]] = [
    ({"ips": []}, "ips"),
    ({"ips": ["192.0.2.300"]}, "ips"),
    ({"ips": None}, "ips"),
    ({"auth_mode": "ip_port"}, "port"),
    ({"auth_mode": "password"}, "username"),
    ({"auth_mode": "password", "username": "u"}, "password"),
    ({"auth_mode": "x"}, "auth_mode"),
    ({"port": 0}, "port"),
    ({"port": 70000}, "port"),
    ({"name": ""}, "name"),
    ({"name": None}, "name"),
    ({"name": "n" * 65}, "name"),
    ({"capacity": -1}, "capacity"),
    ({"enabled": None}, "enabled"),
    ({"bogus": True}, "bogus"),
    ({"id": 5}, "id"),
]

ROUTING_BAD_PATCHES: list[tuple[dict[str, Any], str]] = [
    ({"host": "10.0.0"}, "host"),
    ({"host": None}, "host"),
    ({"port": 0}, "port"),
    ({"port": 70000}, "port"),
    ({"transport": "sctp"}, "transport"),
    ({"prefixes": ["1 2"]}, "prefixes"),
    ({"prefixes": None}, "prefixes"),
    ({"priority": None}, "priority"),
    ({"prefix_mode": "x"}, "prefix_mode"),
    ({"capacity": -1}, "capacity"),
    ({"name": ""}, "name"),
    ({"bogus": True}, "bogus"),
]


def _bad_patches() -> list[Any]:
    return [
        pytest.param(kind, body, field, id=f"{kind.resource}-{_case_id(i, body, field)}")
        for kind, cases in ((MAPPING, MAPPING_BAD_PATCHES), (ROUTING, ROUTING_BAD_PATCHES))
        for i, (body, field) in enumerate(cases)
    ]


@pytest.mark.parametrize(("kind", "body", "field"), _bad_patches())
def test_invalid_patch_and_put_are_422_and_change_nothing(
    env: Env, kind: Kind, body: dict[str, Any], field: str
) -> None:
    item = create(env, kind, kind.minimal)
    url = f"{kind.url}/{item['id']}"
    before = snapshot(env, kind)
    problem = assert_problem(env.client.patch(url, json=body, headers=auth(env.admin)), 422)
    assert field in problem["errors"], problem
    assert snapshot(env, kind) == before
    problem = assert_problem(
        env.client.put(url, json={**kind.minimal, **body}, headers=auth(env.admin)), 422
    )
    assert field in problem["errors"], problem
    assert snapshot(env, kind) == before


@pytest.mark.parametrize("method", ["patch", "put"])
def test_password_gateway_cannot_lose_its_password(env: Env, method: str) -> None:
    """``"password": null`` must not leave a password-mode gateway without a password."""
    item = password_gateway(env)
    before = snapshot(env, MAPPING)
    body: dict[str, Any] = {"password": None}
    if method == "put":
        body.update(name="cust-pw", auth_mode="password", username="alice")
    resp = env.client.open(f"{MAPPING.url}/{item['id']}", method=method.upper(), json=body,
                           headers=auth(env.admin))
    problem = assert_problem(resp, 422)
    assert "password" in problem["errors"]
    assert snapshot(env, MAPPING) == before
    row = stored(env, MAPPING, item["id"])
    assert row is not None and row["password"]


@KINDS
@pytest.mark.parametrize("raw", ["not json", "[1, 2]", "null", '"text"'])
def test_body_that_is_not_a_json_object_is_422(env: Env, kind: Kind, raw: str) -> None:
    item = create(env, kind, kind.minimal)
    before = snapshot(env, kind)
    headers = {**auth(env.admin), "Content-Type": "application/json"}
    for resp in (env.client.post(kind.url, data=raw, headers=headers),
                 env.client.put(f"{kind.url}/{item['id']}", data=raw, headers=headers),
                 env.client.patch(f"{kind.url}/{item['id']}", data=raw, headers=headers)):
        assert assert_problem(resp, 422)["errors"]
    assert snapshot(env, kind) == before


# --- tokens --------------------------------------------------------------------------


@KINDS
def test_read_token_reads_but_cannot_write(env: Env, kind: Kind) -> None:
    item = create(env, kind, kind.minimal)
    url = f"{kind.url}/{item['id']}"
    assert env.client.get(kind.url, headers=auth(env.reader)).status_code == 200
    got = env.client.get(url, headers=auth(env.reader))
    assert got.status_code == 200 and got.get_json() == item
    before = snapshot(env, kind)
    for resp in (
        env.client.post(kind.url, json=kind.body("other"), headers=auth(env.reader)),
        env.client.put(url, json=kind.body("other"), headers=auth(env.reader)),
        env.client.patch(url, json={"name": "other"}, headers=auth(env.reader)),
        env.client.delete(url, headers=auth(env.reader)),
    ):
        assert_problem(resp, 403)
    assert snapshot(env, kind) == before


@KINDS
def test_no_token_is_401(env: Env, kind: Kind) -> None:
    assert_problem(env.client.get(kind.url), 401)
    assert_problem(env.client.post(kind.url, json=kind.minimal), 401)
    assert query(env.target, f"SELECT * FROM {kind.table}") == []


# --- secrets, audit, versions --------------------------------------------------------


def test_password_never_appears_in_responses_or_the_audit_log(env: Env) -> None:
    headers = auth(env.admin)
    bodies: list[str] = []

    def keep(resp: Any) -> Any:
        bodies.append(resp.get_data(as_text=True))
        return resp

    item = keep(env.client.post(MAPPING.url, json={
        "name": "cust-pw", "auth_mode": "password", "username": "alice", "password": SECRET,
    }, headers=headers)).get_json()
    url = f"{MAPPING.url}/{item['id']}"
    keep(env.client.get(url, headers=headers))
    keep(env.client.get(MAPPING.url, headers=headers))
    keep(env.client.get(url, headers=auth(env.reader)))
    keep(env.client.patch(url, json={"password": SECRET + "-2"}, headers=headers))
    keep(env.client.put(url, json={"name": "cust-pw", "auth_mode": "password",
                                   "username": "alice", "password": SECRET + "-3"},
                        headers=headers))
    keep(env.client.post(MAPPING.url, json={"name": "cust-pw", "auth_mode": "password",
                                            "username": "a", "password": SECRET},
                         headers=headers))  # 409
    keep(env.client.patch(url, json={"password": SECRET, "port": 0}, headers=headers))  # 422
    keep(env.client.patch(url, json={"password": SECRET, "nope": 1}, headers=headers))  # 422
    assert [json.loads(b).get("status") for b in bodies[-3:]] == [409, 422, 422]
    for text in bodies:
        assert SECRET not in text
        assert '"password":' not in text.replace(" ", "")
    rows = audit_rows(env)
    assert [r["action"] for r in rows] == ["create", "update", "update"]
    for row in rows:
        assert SECRET not in row["detail"]
        assert json.loads(row["detail"])["password"] == "***"
    assert stored(env, MAPPING, item["id"]) is not None


@KINDS
def test_every_change_is_audited_with_the_token_name(env: Env, kind: Kind) -> None:
    item = create(env, kind, kind.minimal)
    url = f"{kind.url}/{item['id']}"
    assert env.client.put(url, json=kind.body("put-name"),
                          headers=auth(env.admin)).status_code == 200
    assert env.client.patch(url, json=kind.patch, headers=auth(env.admin)).status_code == 200
    assert env.client.delete(url, headers=auth(env.admin)).status_code == 204
    rows = audit_rows(env)
    resource = f"{kind.resource}/{item['id']}"
    assert [(r["actor"], r["action"], r["resource"]) for r in rows] == [
        ("token:ops", "create", resource),
        ("token:ops", "update", resource),
        ("token:ops", "update", resource),
        ("token:ops", "delete", resource),
    ]
    assert json.loads(rows[0]["detail"])["name"] == kind.minimal["name"]
    assert json.loads(rows[1]["detail"])["name"] == "put-name"
    patch_detail = json.loads(rows[2]["detail"])
    assert {k: patch_detail[k] for k in kind.patch} == kind.patch
    assert "name" not in patch_detail
    times = [r["at"] for r in rows]
    assert times == sorted(times)


@KINDS
def test_config_version_counts_every_write_of_its_table_only(env: Env, kind: Kind) -> None:
    other = ROUTING if kind is MAPPING else MAPPING
    start, other_start = version(env, kind.table), version(env, other.table)
    item = create(env, kind, kind.minimal)
    assert version(env, kind.table) == start + 1
    url = f"{kind.url}/{item['id']}"
    env.client.put(url, json=kind.body("v2"), headers=auth(env.admin))
    assert version(env, kind.table) == start + 2
    env.client.patch(url, json=kind.patch, headers=auth(env.admin))
    assert version(env, kind.table) == start + 3
    # refused writes leave the counter alone
    env.client.post(kind.url, json=kind.body("v2"), headers=auth(env.admin))  # 409
    env.client.patch(url, json={"name": ""}, headers=auth(env.admin))  # 422
    env.client.patch(url, json={"name": "x"}, headers=auth(env.reader))  # 403
    assert version(env, kind.table) == start + 3
    env.client.delete(url, headers=auth(env.admin))
    assert version(env, kind.table) == start + 4
    assert version(env, other.table) == other_start


# -- vendors by DNS name (RFC 3263) -------------------------------------------------------

def test_routing_gateway_by_dns_name_leaves_the_port_to_dns(env: Env) -> None:
    named = create(env, ROUTING, {"name": "by-srv", "host": "sip.example.net"})
    assert (named["host"], named["port"]) == ("sip.example.net", None)
    fixed = create(env, ROUTING, {"name": "by-a", "host": "sip.example.net", "port": 5080})
    assert fixed["port"] == 5080
    # An IP address behaves as before: 5060 when no port is given.
    ip = create(env, ROUTING, {"name": "by-ip", "host": "198.51.100.7"})
    assert ip["port"] == 5060
    ip_null = create(env, ROUTING, {"name": "by-ip-null", "host": "198.51.100.8", "port": None})
    assert ip_null["port"] == 5060
    row = stored(env, ROUTING, named["id"])
    assert row is not None and row["port"] is None


def test_patch_of_a_named_gateway_keeps_its_port_unless_given(env: Env) -> None:
    item = create(env, ROUTING, {"name": "n", "host": "sip.example.net", "port": 5090})
    url = f"{ROUTING.url}/{item['id']}"
    resp = env.client.patch(url, json={"host": "sip2.example.net"}, headers=auth(env.admin))
    assert resp.status_code == 200 and resp.get_json()["port"] == 5090
    resp = env.client.patch(url, json={"port": None}, headers=auth(env.admin))
    assert resp.status_code == 200 and resp.get_json()["port"] is None


def test_garbage_host_is_422_with_a_clear_message(env: Env) -> None:
    resp = env.client.post(ROUTING.url, json={"name": "g", "host": "sip..example.net"},
                           headers=auth(env.admin))
    problem = assert_problem(resp, 422)
    assert "neither an IP address nor a DNS host name" in json.dumps(problem)


# -- one username namespace for what registers ---------------------------------------------


def _password_gateway(name: str, username: str) -> dict[str, Any]:
    return {"name": name, "auth_mode": "password", "username": username, "password": SECRET}


def test_a_registering_username_belongs_to_one_phone_or_one_password_gateway(env: Env) -> None:
    """Phones and password-mode gateways both register under their username, so the API
    refuses a username the other already holds (docs/registration.md)."""
    h = auth(env.admin)
    phone = env.client.post("/api/v1/phones", json={"username": "2001", "password": SECRET},
                            headers=h)
    assert phone.status_code == 201
    body = assert_problem(env.client.post(MAPPING.url, json=_password_gateway("pbx", "2001"),
                                          headers=h), 409)
    assert "phone" in body["errors"]["username"][0]
    gw = env.client.post(MAPPING.url, json=_password_gateway("pbx", "trunk1"), headers=h)
    assert gw.status_code == 201
    gw_id = gw.get_json()["id"]
    assert_problem(env.client.post("/api/v1/phones", json={"username": "trunk1",
                                                           "password": SECRET}, headers=h), 409)
    assert_problem(env.client.post(MAPPING.url, json=_password_gateway("pbx2", "trunk1"),
                                   headers=h), 409)
    assert_problem(env.client.patch(f"{MAPPING.url}/{gw_id}", json={"username": "2001"},
                                    headers=h), 409)
    assert_problem(env.client.patch(f"/api/v1/phones/{phone.get_json()['id']}",
                                    json={"username": "trunk1"}, headers=h), 409)
    # Its own username, written again, is no conflict; nor is an IP gateway's username.
    assert env.client.patch(f"{MAPPING.url}/{gw_id}", json={"username": "trunk1"},
                            headers=h).status_code == 200
    assert env.client.post(MAPPING.url, json={"name": "ipgw", "ips": ["192.0.2.77"],
                                              "username": "2001"}, headers=h).status_code == 201
    # Out of password mode the name is free again.
    assert env.client.patch(f"{MAPPING.url}/{gw_id}", json={"auth_mode": "ip",
                                                           "ips": ["192.0.2.78"]},
                            headers=h).status_code == 200
    assert env.client.post("/api/v1/phones", json={"username": "trunk1", "password": SECRET},
                           headers=h).status_code == 201
