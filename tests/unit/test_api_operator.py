"""Operator features of the API: ETag/If-Match, list filters, the audit log, the CDR CSV
export and cursor aliases, Prometheus metrics (engine down and a stand-in engine), and
the value handling of the operator CLI."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apitest import make_api
from flask.testing import FlaskClient

from api.routes.cdrs import CSV_COLUMNS
from b2bua import ipc, opcli
from b2bua.storage import open_database

pytestmark = pytest.mark.both_backends

_serial = itertools.count(1)


@dataclass(frozen=True)
class Env:
    client: FlaskClient
    admin: str
    reader: str
    target: str  # the database
    control: Path

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}", **extra}

    def get(self, url: str, token: str | None = None, **extra: str) -> Any:
        return self.client.get(url, headers=self.headers(token, **extra))

    def post(self, url: str, body: dict[str, Any]) -> Any:
        resp = self.client.post(url, json=body, headers=self.headers())
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return resp

    def insert_cdr(self, **fields: Any) -> dict[str, Any]:
        n = next(_serial)
        start = float(fields.pop("start_at", 1_700_000_000.0 + n))
        row: dict[str, Any] = {
            "call_id_in": f"in-{n}@carrier.example", "call_id_out": f"out-{n}@softswitch",
            "caller": "15551230000", "callee": "445550001", "source": "192.0.2.10:5060",
            "mapping_gateway_id": 1, "mapping_gateway": "cust-a",
            "routing_gateway_id": 10, "routing_gateway": "vend-a",
            "start_at": start, "ringing_at": start + 0.5, "answer_at": start + 2.0,
            "end_at": start + 62.0, "duration": 60.0, "final_code": 200,
            "final_reason": "OK", "hangup_by": "caller", "termination_reason": "caller BYE",
            **fields,
        }
        with open_database(self.target) as database:
            cdr_id = database.insert(
                f"INSERT INTO cdrs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) "
                "RETURNING id", tuple(row.values()))
            stored = database.row("SELECT * FROM cdrs WHERE id = ?", (cdr_id,))
        assert stored is not None
        return stored


@pytest.fixture
def env(tmp_path: Path, backend_db: str | None) -> Iterator[Env]:
    setup = make_api(tmp_path, backend_db)
    yield Env(setup.client, setup.admin, setup.reader, setup.target, setup.control)


def assert_problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = resp.get_json(force=True)
    assert body["status"] == status and body["title"] and body["detail"]
    return body


# --- ETag / If-Match -------------------------------------------------------------------

RESOURCES = pytest.mark.parametrize(
    ("url", "body", "change"),
    [
        ("/api/v1/mapping-gateways", {"name": "cust-a", "ips": ["192.0.2.10"]},
         {"capacity": 12}),
        ("/api/v1/routing-gateways", {"name": "vend-a", "host": "198.51.100.7"},
         {"priority": 3}),
        ("/api/v1/phones", {"username": "3001", "password": "pw-3001"},
         {"display_name": "desk"}),
        ("/api/v1/number-transforms", {"number": "0044", "replacement": "44"},
         {"memo": "uk"}),
        ("/api/v1/number-groups", {"name": "blacklist"}, {"memo": "fraud"}),
    ],
    ids=["mapping", "routing", "phone", "transform", "group"],
)


@RESOURCES
def test_etag_round_trip_and_412(env: Env, url: str, body: dict[str, Any],
                                 change: dict[str, Any]) -> None:
    created = env.post(url, body)
    etag = created.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    item_id = created.get_json()["id"]
    assert created.headers["Location"] == f"{url}/{item_id}"
    one = env.get(f"{url}/{item_id}")
    assert one.status_code == 200 and one.headers["ETag"] == etag
    assert env.get(f"{url}/{item_id}", **{"If-None-Match": etag}).status_code == 304

    changed = env.client.patch(f"{url}/{item_id}", json=change,
                               headers=env.headers(**{"If-Match": etag}))
    assert changed.status_code == 200, changed.get_data(as_text=True)
    new_etag = changed.headers["ETag"]
    assert new_etag != etag
    assert env.get(f"{url}/{item_id}").headers["ETag"] == new_etag

    # the second operator still holds the old tag: refused, nothing changes
    stale = env.client.patch(f"{url}/{item_id}", json={k: None for k in change} | change,
                             headers=env.headers(**{"If-Match": etag}))
    problem = assert_problem(stale, 412)
    assert "If-Match" in problem["detail"]
    assert stale.headers["ETag"] == new_etag
    assert_problem(env.client.put(f"{url}/{item_id}", json=body,
                                  headers=env.headers(**{"If-Match": etag})), 412)
    assert_problem(env.client.delete(f"{url}/{item_id}",
                                     headers=env.headers(**{"If-Match": etag})), 412)
    assert env.get(f"{url}/{item_id}").headers["ETag"] == new_etag

    replaced = env.client.put(f"{url}/{item_id}", json=body,
                              headers=env.headers(**{"If-Match": f'"nope", {new_etag}'}))
    assert replaced.status_code == 200, replaced.get_data(as_text=True)
    assert replaced.headers["ETag"] not in (etag, new_etag)
    deleted = env.client.delete(f"{url}/{item_id}",
                                headers=env.headers(**{"If-Match": replaced.headers["ETag"]}))
    assert deleted.status_code == 204
    assert_problem(env.get(f"{url}/{item_id}"), 404)


@pytest.mark.parametrize("if_match", ["*", None])
def test_star_or_no_if_match_writes_unconditionally(env: Env, if_match: str | None) -> None:
    url = "/api/v1/routing-gateways"
    item_id = env.post(url, {"name": "v", "host": "198.51.100.7"}).get_json()["id"]
    extra = {"If-Match": if_match} if if_match else {}
    resp = env.client.patch(f"{url}/{item_id}", json={"priority": 9},
                            headers=env.headers(**extra))
    assert resp.status_code == 200 and resp.get_json()["priority"] == 9
    assert env.client.delete(f"{url}/{item_id}", headers=env.headers(**extra)).status_code == 204


@pytest.mark.parametrize("if_match", ['W/"{tag}"', "garbage", '""'])
def test_weak_or_malformed_if_match_is_412(env: Env, if_match: str) -> None:
    url = "/api/v1/routing-gateways"
    created = env.post(url, {"name": "v", "host": "198.51.100.7"})
    tag = created.headers["ETag"].strip('"')
    resp = env.client.patch(f"{url}/{created.get_json()['id']}", json={"priority": 9},
                            headers=env.headers(**{"If-Match": if_match.format(tag=tag)}))
    assert_problem(resp, 412)


def test_if_match_on_a_missing_item_is_404(env: Env) -> None:
    resp = env.client.patch("/api/v1/routing-gateways/99", json={"priority": 1},
                            headers=env.headers(**{"If-Match": "*"}))
    assert_problem(resp, 404)


def test_412_comes_before_validation_and_changes_nothing(env: Env) -> None:
    url = "/api/v1/routing-gateways"
    created = env.post(url, {"name": "v", "host": "198.51.100.7"})
    item_id = created.get_json()["id"]
    resp = env.client.patch(f"{url}/{item_id}", json={"priority": "high"},
                            headers=env.headers(**{"If-Match": '"0000"'}))
    assert_problem(resp, 412)
    resp = env.client.patch(f"{url}/{item_id}", json={"priority": "high"},
                            headers=env.headers(**{"If-Match": created.headers["ETag"]}))
    assert_problem(resp, 422)
    assert env.get(f"{url}/{item_id}").headers["ETag"] == created.headers["ETag"]


def test_password_change_changes_the_etag_but_the_tag_ignores_the_password(env: Env) -> None:
    url = "/api/v1/phones"
    created = env.post(url, {"username": "3001", "password": "first"})
    item_id = created.get_json()["id"]
    resp = env.client.patch(f"{url}/{item_id}", json={"password": "second"},
                            headers=env.headers(**{"If-Match": created.headers["ETag"]}))
    assert resp.status_code == 200 and resp.headers["ETag"] != created.headers["ETag"]
    with open_database(env.target) as database:
        database.execute("UPDATE phones SET password = 'third' WHERE id = ?", (item_id,))
    assert env.get(f"{url}/{item_id}").headers["ETag"] == resp.headers["ETag"]


def test_openapi_documents_if_match_and_412(env: Env) -> None:
    spec = env.get("/api/v1/openapi.json").get_json()
    for method in ("put", "patch", "delete"):
        op = spec["paths"]["/api/v1/routing-gateways/{item_id}"][method]
        assert "412" in op["responses"]
        assert any(p["in"] == "header" and p["name"] == "If-Match" for p in op["parameters"])


# --- list filters ------------------------------------------------------------------------


def test_name_and_enabled_filters(env: Env) -> None:
    url = "/api/v1/routing-gateways"
    ids = {}
    for name, enabled in (("a", True), ("b", False), ("c", True), ("d", False)):
        ids[name] = env.post(url, {"name": name, "host": "198.51.100.7",
                                   "enabled": enabled}).get_json()["id"]

    def names(query: str) -> list[str]:
        resp = env.get(f"{url}?{query}")
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [i["name"] for i in resp.get_json()["items"]]

    assert names("name=b") == ["b"]
    assert names("name=B") == [] and names("name=") == []
    assert names("enabled=true") == ["a", "c"]
    assert names("enabled=false") == ["b", "d"]
    assert names("enabled=false&name=d") == ["d"]
    assert names("enabled=true&name=d") == []
    first = env.get(f"{url}?enabled=false&limit=1").get_json()
    assert [i["name"] for i in first["items"]] == ["b"] and first["next_after_id"] == ids["b"]
    rest = env.get(f"{url}?enabled=false&limit=1&after_id={ids['b']}").get_json()
    assert [i["name"] for i in rest["items"]] == ["d"] and rest["next_after_id"] is None


def test_phone_and_transform_filters_use_their_key_column(env: Env) -> None:
    env.post("/api/v1/phones", {"username": "3001", "password": "x"})
    env.post("/api/v1/phones", {"username": "3002", "password": "x", "enabled": False})
    env.post("/api/v1/number-transforms", {"number": "0044", "replacement": "44"})
    phones = env.get("/api/v1/phones?username=3002").get_json()["items"]
    assert [p["username"] for p in phones] == ["3002"]
    assert [p["username"] for p in
            env.get("/api/v1/phones?enabled=true").get_json()["items"]] == ["3001"]
    found = env.get("/api/v1/number-transforms?number=0044").get_json()["items"]
    assert [t["replacement"] for t in found] == ["44"]


@pytest.mark.parametrize(
    ("url", "query", "field"),
    [
        ("/api/v1/routing-gateways", "enabled=yes", "enabled"),
        ("/api/v1/routing-gateways", "enabled=1", "enabled"),
        ("/api/v1/routing-gateways", "enabled=", "enabled"),
        ("/api/v1/routing-gateways", "nmae=a", "nmae"),
        ("/api/v1/phones", "name=3001", "name"),
        ("/api/v1/number-groups", "enabled=true", "enabled"),
        ("/api/v1/number-transforms", "name=x", "name"),
    ],
)
def test_bad_or_unknown_filter_is_422(env: Env, url: str, query: str, field: str) -> None:
    problem = assert_problem(env.get(f"{url}?{query}"), 422)
    assert field in problem["errors"], problem


def test_openapi_documents_the_filters(env: Env) -> None:
    spec = env.get("/api/v1/openapi.json").get_json()

    def params(path: str) -> dict[str, Any]:
        return {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}

    routing = params("/api/v1/routing-gateways")
    assert {"name", "enabled"} <= set(routing)
    assert routing["enabled"]["schema"]["type"] == "boolean"
    assert "username" in params("/api/v1/phones") and "name" not in params("/api/v1/phones")


# --- audit ---------------------------------------------------------------------------------


def _audit_rows(env: Env, rows: list[tuple[float, str, str, str, Any]]) -> list[int]:
    with open_database(env.target) as database:
        return [database.insert(
            "INSERT INTO audit_log (at, actor, action, resource, detail) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (at, actor, action, resource, json.dumps(detail)))
            for at, actor, action, resource, detail in rows]


def test_audit_lists_api_changes_with_redacted_detail(env: Env) -> None:
    created = env.post("/api/v1/mapping-gateways",
                       {"name": "c", "auth_mode": "password", "username": "u",
                        "password": "Secret-1"})
    item_id = created.get_json()["id"]
    env.client.put("/api/v1/parameters/SS_REPLY_UNAUTHORIZED", json={"value": "Off"},
                   headers=env.headers())
    resp = env.get("/api/v1/audit", token=env.reader)
    assert resp.status_code == 200
    items = resp.get_json()["items"]
    assert [(i["actor"], i["action"], i["resource"]) for i in items] == [
        ("token:ops", "create", f"mapping-gateways/{item_id}"),
        ("token:ops", "update", "parameter/SS_REPLY_UNAUTHORIZED"),
    ]
    assert items[0]["detail"]["password"] == "***" and items[0]["detail"]["name"] == "c"
    assert items[1]["detail"] == {"value": "Off"}
    assert "Secret-1" not in resp.get_data(as_text=True)
    assert_problem(env.client.get("/api/v1/audit"), 401)


def test_audit_filters_and_cursor(env: Env) -> None:
    ids = _audit_rows(env, [
        (100.0, "token:ops", "create", "routing-gateways/1", {"name": "v1"}),
        (200.0, "cli", "update", "parameter/SS_SIP_TIMEOUT_INVITE", {"value": 15}),
        (300.0, "token:ops", "update", "routing-gateways/12", {"priority": 5}),
        (400.0, "token:noc", "delete", "routing-gateways/1", None),
        (500.0, "token:ops", "create", "mapping-gateways/1", {}),
    ])

    def found(query: str) -> list[int]:
        resp = env.get(f"/api/v1/audit?{query}")
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [i["id"] for i in resp.get_json()["items"]]

    assert found("") == ids
    assert found("since=200&until=400") == ids[1:3]
    assert found("since=200.5") == ids[2:]
    assert found("actor=token:ops") == [ids[0], ids[2], ids[4]]
    assert found("actor=token") == []
    assert found("resource=routing-gateways") == [ids[0], ids[2], ids[3]]
    assert found("resource=routing-gateways/1") == [ids[0], ids[2], ids[3]]
    assert found("resource=routing-gateways/1%25") == []  # no LIKE wildcards
    assert found("resource=routing-gateways/12") == [ids[2]]
    assert found("resource=parameter/SS_SIP") == [ids[1]]
    assert found("action=delete") == [ids[3]]
    assert found("actor=token:ops&resource=routing-gateways&since=150") == [ids[2]]
    page = env.get("/api/v1/audit?limit=2").get_json()
    assert [i["id"] for i in page["items"]] == ids[:2] and page["next_after_id"] == ids[1]
    assert found(f"after_id={ids[1]}&limit=2") == ids[2:4]
    assert env.get(f"/api/v1/audit?after_id={ids[3]}&limit=2").get_json()[
        "next_after_id"] is None
    one = env.get("/api/v1/audit?action=delete").get_json()["items"][0]
    assert one == {"id": ids[3], "at": 400.0, "actor": "token:noc", "action": "delete",
                   "resource": "routing-gateways/1", "detail": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [("since=yesterday", "since"), ("until=nan", "until"), ("limit=0", "limit"),
     ("after_id=-1", "after_id"), ("actor=", "actor"), ("resource=", "resource"),
     ("who=ops", "who")],
)
def test_audit_bad_query_is_422(env: Env, query: str, field: str) -> None:
    assert field in assert_problem(env.get(f"/api/v1/audit?{query}"), 422)["errors"]


# --- CDRs: cursor alias, caller/callee filters, tail, CSV ----------------------------------


def _ids(env: Env, url: str) -> list[int]:
    resp = env.get(url)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [i["id"] for i in resp.get_json()["items"]]


def test_caller_callee_filters_and_since_id_alias(env: Env) -> None:
    a = env.insert_cdr(caller="1001", callee="4420700")["id"]
    b = env.insert_cdr(caller="1002", callee="3310000")["id"]
    c = env.insert_cdr(caller="1001", callee="4499999")["id"]
    d = env.insert_cdr(caller="10011", callee="44")["id"]
    assert _ids(env, "/api/v1/cdrs?caller=1001") == [a, c]
    assert _ids(env, "/api/v1/cdrs?caller=1001*") == [a, c, d]
    assert _ids(env, "/api/v1/cdrs?callee=44*") == [a, c, d]
    assert _ids(env, "/api/v1/cdrs?callee=44") == [d]
    assert _ids(env, "/api/v1/cdrs?callee=44*&caller=1001") == [a, c]
    assert _ids(env, "/api/v1/cdrs?callee=33*") == [b]
    assert _ids(env, f"/api/v1/cdrs?since_id={a}") == [b, c, d]
    assert _ids(env, f"/api/v1/cdrs?since_id={a}&after_id={a}") == [b, c, d]
    assert _ids(env, f"/api/v1/cdrs?since_id={b}&callee=44*") == [c, d]
    assert _ids(env, "/api/v1/cdrs?tail=2") == [c, d]
    assert _ids(env, "/api/v1/cdrs?tail=2&caller=1001") == [a, c]
    assert env.get("/api/v1/cdrs?tail=2").get_json()["next_after_id"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [("since_id=-1", "since_id"), ("since_id=x", "since_id"),
     ("since_id=3&after_id=4", "since_id"), ("caller=", "caller"), ("callee=*", "callee"),
     ("callee=4*4*", "callee"), ("caller=" + "1" * 129, "caller"), ("tail=0", "tail"),
     ("tail=3&after_id=1", "tail"), ("calee=44", "calee")],
)
def test_bad_cdr_query_is_422(env: Env, query: str, field: str) -> None:
    for url in ("/api/v1/cdrs", "/api/v1/cdrs.csv"):
        if field == "tail" and url.endswith(".csv"):
            continue
        assert field in assert_problem(env.get(f"{url}?{query}"), 422)["errors"], url


def _csv(env: Env, query: str = "", token: str | None = None) -> tuple[Any, list[list[str]]]:
    resp = env.get(f"/api/v1/cdrs.csv?{query}", token=token)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.content_type == "text/csv; charset=utf-8"
    return resp, list(csv.reader(io.StringIO(resp.get_data(as_text=True))))


def test_csv_header_and_rows(env: Env) -> None:
    answered = env.insert_cdr(caller='"Bob", =1+1', callee="4420700")
    failed = env.insert_cdr(answer_at=None, duration=0.0, final_code=486,
                            final_reason="Busy Here", hangup_by="callee", call_id_out=None)
    resp, rows = _csv(env, token=env.reader)
    assert rows[0] == list(CSV_COLUMNS)
    assert rows[0][:6] == ["id", "start_at", "ringing_at", "answer_at", "end_at", "duration"]
    assert len(rows) == 3 and "X-Next-After-Id" not in resp.headers
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["id"] == str(answered["id"]) and first["caller"] == '"Bob", =1+1'
    assert float(first["start_at"]) == answered["start_at"]
    assert first["final_code"] == "200" and first["routing_gateway"] == "vend-a"
    second = dict(zip(rows[0], rows[2], strict=True))
    assert second["id"] == str(failed["id"])
    assert second["answer_at"] == "" and second["call_id_out"] == ""
    assert second["final_reason"] == "Busy Here"
    assert resp.get_data(as_text=True).endswith("\r\n")


def test_csv_filters_match_the_json_list(env: Env) -> None:
    for n in range(12):
        env.insert_cdr(caller=f"100{n % 3}", callee=f"44{n}", start_at=100.0 + n,
                       routing_gateway_id=10 + n % 2)
    for query in ("caller=1001", "callee=441*", "since=103&until=109",
                  "routing_gateway_id=11", "mapping_gateway_id=1&caller=1002", "since_id=5"):
        json_ids = _ids(env, f"/api/v1/cdrs?{query}&limit=1000")
        _, rows = _csv(env, query)
        assert [int(r[0]) for r in rows[1:]] == json_ids, query


def test_csv_cursor_pages_every_row_once(env: Env) -> None:
    ids = [env.insert_cdr(caller="1001" if n % 2 else "2002")["id"] for n in range(11)]
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        resp, rows = _csv(env, f"limit=3&after_id={after}")
        pages += 1
        page = [int(r[0]) for r in rows[1:]]
        seen += page
        if "X-Next-After-Id" not in resp.headers:
            break
        assert len(page) == 3 and int(resp.headers["X-Next-After-Id"]) == page[-1]
        after = page[-1]
    assert seen == ids and pages == 4
    _, rows = _csv(env, "limit=2&caller=1001")
    assert [int(r[0]) for r in rows[1:]] == [i for n, i in enumerate(ids) if n % 2][:2]
    _, rows = _csv(env, f"after_id={ids[-1]}")
    assert rows == [list(CSV_COLUMNS)]


@pytest.mark.parametrize(("query", "field"), [("limit=0", "limit"), ("limit=100001", "limit"),
                                              ("after_id=x", "after_id"),
                                              ("since=abc", "since")])
def test_csv_bad_query_is_problem_json(env: Env, query: str, field: str) -> None:
    assert field in assert_problem(env.get(f"/api/v1/cdrs.csv?{query}"), 422)["errors"]


def test_csv_needs_a_token_and_is_documented(env: Env) -> None:
    assert_problem(env.client.get("/api/v1/cdrs.csv"), 401)
    spec = env.get("/api/v1/openapi.json").get_json()
    op = spec["paths"]["/api/v1/cdrs.csv"]["get"]
    assert "text/csv" in op["responses"]["200"]["content"]
    assert {"limit", "after_id", "since_id", "caller", "callee", "since", "until"} <= {
        p["name"] for p in op["parameters"]}
    limit = next(p for p in op["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 100_000 and limit["schema"]["default"] == 10_000
    cdr = spec["components"]["schemas"]["Cdr"]["properties"]
    assert set(CSV_COLUMNS) <= set(cdr)


# --- metrics -------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{([a-z_]+="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$')


def parse_exposition(text: str) -> dict[str, dict[str, float]]:
    """Check the text format strictly; {family: {labels: value}}."""
    assert text.endswith("\n")
    families: dict[str, dict[str, float]] = {}
    typed: dict[str, str] = {}
    helped: set[str] = set()
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helped, f"HELP twice: {name}"
            helped.add(name)
            current = name
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == current and name not in typed and kind in (
                "counter", "gauge", "untyped", "histogram")
            typed[name] = kind
            families[name] = {}
            continue
        match = SAMPLE.match(line)
        assert match, f"bad sample line: {line!r}"
        name = match.group(1)
        if typed.get(current) == "histogram":
            assert name in (f"{current}_bucket", f"{current}_sum", f"{current}_count")
            families[current][name + (match.group(2) or "")] = float(match.group(4))
            continue
        assert name == current, f"{name} outside its family"
        assert name.startswith("softswitch_")
        if typed[name] == "counter":
            assert name.endswith("_total")
        families[name][match.group(2) or ""] = float(match.group(4))
    return families


def test_metrics_with_the_engine_down(env: Env) -> None:
    assert_problem(env.client.get("/api/v1/metrics"), 401)
    resp = env.get("/api/v1/metrics", token=env.reader)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = resp.get_data(as_text=True)
    assert "# TYPE softswitch_engine_up gauge" in text
    assert parse_exposition(text) == {"softswitch_engine_up": {"": 0.0}}


class _FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    replies: dict[str, Any]


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: Any = self.server
        while True:
            try:
                op = ipc.recv(self.request)["op"]
            except ipc.FrameError:
                return  # the client closed the connection
            if op in server.replies:
                reply = {"ok": True, "result": server.replies[op]}
            else:
                reply = {"ok": False, "error": "unknown or malformed request"}
            self.wfile.write(ipc.encode(reply))


@pytest.fixture
def engine(env: Env) -> Iterator[_FakeEngine]:
    server = _FakeEngine(str(env.control), _Handler)
    server.replies = {
        "status": {"uptime": 12.5, "gc": {"full_collections": 2,
                                          "last_full_pause_seconds": 0.125}},
        "stats": {"attempts": 7, "answered": 5, "failed": 1, "rejected_capacity": 2,
                  "loops": 0, "active": 1, "legs": 1, "future_counter": 4,
                  "sip": {"requests": 40, "parse_errors": 1},
                  "transport": {"received": 90, "tcp_connections": 2}},
        "security": {"dropped": {"unknown_source": 3}, "rejected": {},
                     "challenged": {"phone": 4}, "authenticated": {"phone": 2},
                     "suspended": {'we"ird\\reason\nx': 1}, "suspended_now": 1,
                     "auth_sessions": 2, "auth_sessions_evicted": 0, "failure_entries": 1,
                     "nonce_counts": 2, "log_lines_suppressed": 6},
        "keepalive": {"cycles": 3, "completed": 2, "restarted": 1, "sent": 10,
                      "missed_last_cycle": 0, "missed_total": 1, "phones_last_cycle": 4,
                      "last_cycle_at": 1700000000.25, "last_cycle_seconds": 0.5},
        "registrations": [{"username": "3001", "nat": True}, {"username": "3001", "nat": False},
                          {"username": "3002", "nat": True},
                          {"username": "pbx", "nat": True, "kind": "mapping_gateway",
                           "mapping_gateway_id": 7}],
        "gateways": [{"id": 3, "name": 'vend "A"', "enabled": True, "current_calls": 1,
                      "total_calls": 6, "retry_after_until": None},
                     {"id": 4, "name": "vend-b", "enabled": False, "current_calls": 0,
                      "total_calls": 0, "retry_after_until": 1700000000.0}],
        "media": {"workers": [{"index": 0, "pid": 11, "alive": True, "ports": "20000-29999",
                               "sessions": 3, "ports_in_use": 6, "loop_lag_ms": 1.5,
                               "starts": 1},
                              {"index": 1, "pid": 12, "alive": False, "ports": "30000-39999",
                               "sessions": 0, "ports_in_use": 0, "loop_lag_ms": 0.0,
                               "starts": 2}],
                  "ports_in_use": 6, "ports_free": 9994,
                  "engine_loop_lag": {"mean_ms": 2.0, "peak_ms": 40.0, "worst_ms": 250.0},
                  "totals": {"aes128": {"calls": 2, "packets": 400, "bytes": 68800,
                                        "malformed": 1, "foreign": 0, "dropped": 3}}},
        "quality": {"gateways": [
            {"kind": "routing", "id": 3, "name": "vend-a", "attempts": 4, "answered": 2,
             "ner": 3, "talk": 95.5, "pdd_seconds": 3.31,
             "pdd": {"300": 1, "310": 1, "2000": 1}, "failures": {"503": 2}}],
            "rollup": {"running": True, "runs": 7, "calls": 40, "errors": 1,
                       "last_error": "x", "last_run_at": 1700000000.5}},
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_from_the_engine(env: Env, engine: _FakeEngine) -> None:
    text = env.get("/api/v1/metrics").get_data(as_text=True)
    m = parse_exposition(text)
    assert m["softswitch_engine_up"] == {"": 1.0}
    assert m["softswitch_engine_uptime_seconds"] == {"": 12.5}
    assert m["softswitch_gc_full_collections_total"] == {"": 2}
    assert m["softswitch_gc_last_full_pause_seconds"] == {"": 0.125}
    assert m["softswitch_call_attempts_total"] == {"": 7}
    assert m["softswitch_calls_answered_total"] == {"": 5}
    assert m["softswitch_calls_failed_total"] == {"": 1}
    assert m["softswitch_calls_active"] == {"": 1}
    assert m["softswitch_calls_refused_total"] == {'{reason="rejected_capacity"}': 2,
                                                   '{reason="loops"}': 0}
    assert m["softswitch_engine_future_counter"] == {"": 4}
    assert m["softswitch_sip_requests_total"] == {"": 40}
    assert m["softswitch_transport_tcp_connections_total"] == {"": 2}
    assert m["softswitch_security_dropped_total"] == {'{reason="unknown_source"}': 3}
    assert m["softswitch_security_rejected_total"] == {}
    assert m["softswitch_security_suspended_total"] == {
        '{reason="we\\"ird\\\\reason\\nx"}': 1}
    assert m["softswitch_security_suspended_now"] == {"": 1}
    assert m["softswitch_keepalive_sent_total"] == {"": 10}
    assert m["softswitch_keepalive_last_cycle_timestamp_seconds"] == {"": 1700000000.25}
    assert m["softswitch_registrations"] == {"": 4}
    assert m["softswitch_registrations_nat"] == {"": 3}
    assert m["softswitch_registered_mapping_gateways"] == {"": 1}
    assert m["softswitch_registered_phones"] == {"": 2}
    assert m["softswitch_gateway_current_calls"] == {
        '{gateway="vend \\"A\\"",gateway_id="3"}': 1, '{gateway="vend-b",gateway_id="4"}': 0}
    assert m["softswitch_gateway_retry_after"]['{gateway="vend-b",gateway_id="4"}'] == 1
    assert m["softswitch_gateway_enabled"]['{gateway="vend-b",gateway_id="4"}'] == 0
    assert m["softswitch_engine_loop_lag_seconds"] == {"": 0.002}
    assert m["softswitch_engine_loop_lag_peak_seconds"] == {"": 0.04}
    assert m["softswitch_relay_workers_up"] == {"": 1}
    assert m["softswitch_relay_worker_sessions"] == {'{worker="0"}': 3, '{worker="1"}': 0}
    assert m["softswitch_relay_worker_starts_total"]['{worker="1"}'] == 2
    assert m["softswitch_relay_worker_loop_lag_seconds"]['{worker="0"}'] == 0.0015
    assert m["softswitch_relay_packets_total"] == {'{cipher="aes128"}': 400}
    assert m["softswitch_relay_dropped_total"] == {'{cipher="aes128"}': 3}
    assert m["softswitch_relay_malformed_total"] == {'{cipher="aes128"}': 1}
    vendor = '{gateway="vend-a",gateway_id="3",kind="routing"}'
    assert m["softswitch_gateway_attempts_total"] == {vendor: 4}
    assert m["softswitch_gateway_answered_total"] == {vendor: 2}
    assert m["softswitch_gateway_ner_effective_total"] == {vendor: 3}
    assert m["softswitch_gateway_talk_seconds_total"] == {vendor: 95.5}
    assert m["softswitch_gateway_failures_total"] == {
        '{code="503",gateway="vend-a",gateway_id="3",kind="routing"}': 2}
    pdd = m["softswitch_gateway_pdd_seconds"]
    bucket = 'softswitch_gateway_pdd_seconds_bucket{gateway="vend-a",gateway_id="3",'
    assert pdd[bucket + 'kind="routing",le="0.25"}'] == 0
    assert pdd[bucket + 'kind="routing",le="0.5"}'] == 2
    assert pdd[bucket + 'kind="routing",le="2.0"}'] == 3
    assert pdd[bucket + 'kind="routing",le="+Inf"}'] == 3
    assert pdd["softswitch_gateway_pdd_seconds_count" + vendor] == 3
    assert pdd["softswitch_gateway_pdd_seconds_sum" + vendor] == 3.31
    assert m["softswitch_gateway_stats_rollup_runs_total"] == {"": 7}
    assert m["softswitch_gateway_stats_rollup_errors_total"] == {"": 1}
    assert m["softswitch_gateway_stats_rollup_last_run_timestamp_seconds"] == {"": 1700000000.5}


def test_metrics_survive_one_engine_op_failing(env: Env, engine: _FakeEngine) -> None:
    del engine.replies["keepalive"]
    engine.replies["gateways"] = {"not": "a list"}
    resp = env.get("/api/v1/metrics")
    assert resp.status_code == 200
    m = parse_exposition(resp.get_data(as_text=True))
    assert m["softswitch_engine_up"] == {"": 1.0}
    assert m["softswitch_engine_scrape_errors"] == {'{op="keepalive"}': 1,
                                                    '{op="gateways"}': 1}
    assert "softswitch_keepalive_sent_total" not in m
    assert "softswitch_gateway_current_calls" not in m
    assert m["softswitch_calls_answered_total"] == {"": 5}


# --- the operator CLI's value handling ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "prop", "value"),
    [
        ("5", {"type": "integer"}, 5),
        ("null", {"type": "integer", "nullable": True}, None),
        ("null", {"type": "string"}, "null"),
        ("off", {"type": "boolean"}, False),
        ("Yes", {"type": "boolean"}, True),
        ("44, 33,1", {"type": "array", "items": {"type": "string"}}, ["44", "33", "1"]),
        ("486,503", {"type": "array", "items": {"type": "integer"}}, [486, 503]),
        ('["4,4"]', {"type": "array", "items": {"type": "string"}}, ["4,4"]),
        ("", {"type": "array", "items": {"type": "string"}}, []),
        ("0123", {"type": "string"}, "0123"),
        ("1.5", None, 1.5),
        ("abc", None, "abc"),
    ],
)
def test_cli_converts_values_by_their_schema(text: str, prop: dict[str, Any] | None,
                                             value: Any) -> None:
    assert opcli.convert("f", text, prop) == value


@pytest.mark.parametrize(("text", "prop"), [("x", {"type": "integer"}),
                                            ("maybe", {"type": "boolean"})])
def test_cli_refuses_a_value_of_the_wrong_type(text: str, prop: dict[str, Any]) -> None:
    with pytest.raises(opcli.OpError):
        opcli.convert("f", text, prop)


def test_cli_refuses_read_only_and_malformed_assignments() -> None:
    props = {"id": {"type": "integer", "readOnly": True}}
    with pytest.raises(opcli.OpError, match="read-only"):
        opcli.assignments(["id=3"], props)
    with pytest.raises(opcli.OpError, match="KEY=VALUE"):
        opcli.assignments(["priority"], props)


def test_cli_table() -> None:
    text = opcli.table([{"id": 1, "name": "v1", "prefixes": ["44", "33"], "enabled": True,
                         "capacity": None}], ("id", "name", "prefixes", "enabled", "capacity"))
    assert text.splitlines() == ["ID  NAME  PREFIXES  ENABLED  CAPACITY",
                                 "1   v1    44,33     yes      -"]
