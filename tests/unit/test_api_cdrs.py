"""CDRs over the REST API: id order, cursor pagination, filters, one CDR, the document."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apitest import assert_problem, auth, make_api
from flask.testing import FlaskClient

from b2bua.storage import open_database

pytestmark = pytest.mark.both_backends

URL = "/api/v1/cdrs"

_serial = itertools.count(1)


@dataclass(frozen=True)
class Env:
    client: FlaskClient
    admin: str
    reader: str
    target: str  # the database

    def insert(self, **fields: Any) -> dict[str, Any]:
        """Insert one CDR row (as the engine does) and return it as stored."""
        row = cdr_row(**fields)
        with open_database(self.target) as database:
            cdr_id = database.insert(
                f"INSERT INTO cdrs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) "
                "RETURNING id", tuple(row.values()))
            stored = database.row("SELECT * FROM cdrs WHERE id = ?", (cdr_id,))
        assert stored is not None
        return stored

    def get(self, query: str = "", token: str | None = None) -> Any:
        return self.client.get(f"{URL}?{query}" if query else URL,
                               headers=auth(token or self.admin))

    def ids(self, query: str = "") -> list[int]:
        resp = self.get(query)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [item["id"] for item in resp.get_json()["items"]]

    def walk(self, query: str, limit: int) -> tuple[list[int], int]:
        """Follow ``next_after_id`` from the start; the ids seen and the page count."""
        seen: list[int] = []
        pages = 0
        after: int | None = 0
        while after is not None:
            resp = self.get(f"{query}&limit={limit}&after_id={after}")
            assert resp.status_code == 200, resp.get_data(as_text=True)
            page = resp.get_json()
            assert len(page["items"]) <= limit
            pages += 1
            seen += [item["id"] for item in page["items"]]
            after = page["next_after_id"]
            if after is not None:
                assert after == page["items"][-1]["id"]
        return seen, pages


def cdr_row(**fields: Any) -> dict[str, Any]:
    n = next(_serial)
    start = float(fields.get("start_at", 1_700_000_000.0 + n))
    row: dict[str, Any] = {
        "call_id_in": f"in-{n}@carrier.example",
        "call_id_out": f"out-{n}@softswitch",
        "caller": "+15551230000",
        "callee": "+445550001",
        "source": "192.0.2.10:5060",
        "mapping_gateway_id": 1,
        "mapping_gateway": "cust-a",
        "routing_gateway_id": 10,
        "routing_gateway": "vend-a",
        "start_at": start,
        "ringing_at": start + 0.5,
        "answer_at": start + 2.0,
        "end_at": start + 62.0,
        "duration": 60.0,
        "final_code": 200,
        "final_reason": "OK",
        "hangup_by": "caller",
        "termination_reason": "normal",
    }
    row.update(fields)
    return row


@pytest.fixture
def env(tmp_path: Path, backend_db: str | None) -> Iterator[Env]:
    setup = make_api(tmp_path, backend_db)
    yield Env(setup.client, setup.admin, setup.reader, setup.target)


# --- list and order ------------------------------------------------------------------


def test_empty_list(env: Env) -> None:
    resp = env.get()
    assert resp.status_code == 200
    assert resp.get_json() == {"items": [], "next_after_id": None}


def test_list_is_in_id_order_with_every_column(env: Env) -> None:
    # start times out of order: the list still follows the id
    rows = [env.insert(start_at=t) for t in (500.0, 100.0, 300.0, 200.0, 400.0)]
    failed = env.insert(start_at=600.0, answer_at=None, duration=None, final_code=486,
                        final_reason="Busy Here", hangup_by="callee", call_id_out=None,
                        routing_gateway_id=None, routing_gateway=None)
    rows.append(failed)
    resp = env.get()
    assert resp.status_code == 200 and resp.content_type == "application/json"
    page = resp.get_json()
    assert page["next_after_id"] is None
    assert [item["id"] for item in page["items"]] == sorted(r["id"] for r in rows)
    assert page["items"] == sorted(rows, key=lambda r: r["id"])
    assert page["items"][-1]["answer_at"] is None and page["items"][-1]["final_code"] == 486


def test_read_token_may_read_cdrs_and_no_token_may_not(env: Env) -> None:
    row = env.insert()
    assert env.get(token=env.reader).status_code == 200
    assert env.client.get(f"{URL}/{row['id']}", headers=auth(env.reader)).get_json() == {
        **row, "attempts": []}
    assert_problem(env.client.get(URL), 401)
    assert_problem(env.client.get(f"{URL}/{row['id']}"), 401)


def test_cdrs_cannot_be_written_through_the_api(env: Env) -> None:
    row = env.insert()
    assert_problem(env.client.post(URL, json=cdr_row(), headers=auth(env.admin)), 405)
    assert_problem(env.client.delete(f"{URL}/{row['id']}", headers=auth(env.admin)), 405)
    assert env.ids() == [row["id"]]


# --- cursor pagination ---------------------------------------------------------------


@pytest.mark.parametrize(("count", "limit", "pages"), [(11, 3, 4), (12, 3, 4), (1, 1, 1),
                                                        (5, 1000, 1), (7, 1, 7)])
def test_cursor_returns_every_row_exactly_once(
    env: Env, count: int, limit: int, pages: int
) -> None:
    ids = [env.insert()["id"] for _ in range(count)]
    seen, walked = env.walk("", limit)
    assert seen == ids
    assert walked == pages


def test_cursor_sees_rows_inserted_between_pages(env: Env) -> None:
    ids = [env.insert()["id"] for _ in range(5)]
    first = env.get("limit=2").get_json()
    seen = [item["id"] for item in first["items"]]
    after = first["next_after_id"]
    ids += [env.insert()["id"] for _ in range(3)]  # arrive while the client pages
    while after is not None:
        page = env.get(f"limit=2&after_id={after}").get_json()
        seen += [item["id"] for item in page["items"]]
        after = page["next_after_id"]
        if after is not None and len(ids) < 12:
            ids.append(env.insert()["id"])
    assert seen == ids
    assert len(set(seen)) == len(seen)
    # the last id seen is the cursor for the next poll: only newer rows come back
    newer = [env.insert()["id"] for _ in range(2)]
    assert env.ids(f"after_id={seen[-1]}") == newer


def test_cursor_past_the_end_is_an_empty_last_page(env: Env) -> None:
    last = env.insert()["id"]
    assert env.get(f"after_id={last}").get_json() == {"items": [], "next_after_id": None}
    assert env.get(f"after_id={last + 1000}").get_json() == {"items": [],
                                                             "next_after_id": None}


# --- filters -------------------------------------------------------------------------


@pytest.fixture
def timeline(env: Env) -> dict[float, int]:
    """CDRs starting at 100..600, inserted out of time order; start_at -> id."""
    return {t: env.insert(start_at=t)["id"] for t in (300.0, 100.0, 600.0, 200.0, 500.0, 400.0)}


def _ids_for(timeline: dict[float, int], *starts: float) -> list[int]:
    return sorted(timeline[t] for t in starts)


def test_since_is_inclusive(env: Env, timeline: dict[float, int]) -> None:
    assert env.ids("since=400") == _ids_for(timeline, 400.0, 500.0, 600.0)
    assert env.ids("since=399.5") == _ids_for(timeline, 400.0, 500.0, 600.0)
    assert env.ids("since=400.001") == _ids_for(timeline, 500.0, 600.0)
    assert env.ids("since=0") == sorted(timeline.values())
    assert env.ids("since=601") == []


def test_until_is_exclusive(env: Env, timeline: dict[float, int]) -> None:
    assert env.ids("until=300") == _ids_for(timeline, 100.0, 200.0)
    assert env.ids("until=300.5") == _ids_for(timeline, 100.0, 200.0, 300.0)
    assert env.ids("until=100") == []
    assert env.ids("until=1e12") == sorted(timeline.values())


def test_since_and_until_together(env: Env, timeline: dict[float, int]) -> None:
    assert env.ids("since=200&until=500") == _ids_for(timeline, 200.0, 300.0, 400.0)
    assert env.ids("since=500&until=200") == []
    assert env.ids("since=300&until=300") == []


def test_time_filter_pages_without_loss(env: Env, timeline: dict[float, int]) -> None:
    seen, pages = env.walk("since=200&until=600", 1)
    assert seen == _ids_for(timeline, 200.0, 300.0, 400.0, 500.0)
    assert pages == 4


@pytest.fixture
def mixed(env: Env) -> list[dict[str, Any]]:
    """CDRs across two mapping gateways, two routing gateways, and one unrouted call."""
    spec = [
        (1, 10, 100.0), (2, 10, 110.0), (1, 20, 120.0), (1, 10, 130.0),
        (2, 20, 140.0), (1, None, 150.0), (1, 20, 160.0), (2, 10, 170.0),
    ]
    return [env.insert(mapping_gateway_id=m, routing_gateway_id=r, start_at=t)
            for m, r, t in spec]


def _where(rows: list[dict[str, Any]], **want: Any) -> list[int]:
    def keep(row: dict[str, Any]) -> bool:
        if "since" in want and row["start_at"] < want["since"]:
            return False
        if "until" in want and row["start_at"] >= want["until"]:
            return False
        return all(row[k] == v for k, v in want.items() if k not in ("since", "until"))

    return [row["id"] for row in rows if keep(row)]


@pytest.mark.parametrize(
    "filters",
    [
        {"mapping_gateway_id": 1},
        {"mapping_gateway_id": 2},
        {"mapping_gateway_id": 3},
        {"routing_gateway_id": 10},
        {"routing_gateway_id": 20},
        {"mapping_gateway_id": 1, "routing_gateway_id": 20},
        {"mapping_gateway_id": 2, "routing_gateway_id": 10, "since": 115.0},
        {"mapping_gateway_id": 1, "since": 120.0, "until": 160.0},
        {"routing_gateway_id": 10, "until": 170.0},
        {"mapping_gateway_id": 1, "routing_gateway_id": 10, "since": 100.0, "until": 131.0},
    ],
)
def test_gateway_and_time_filters_combine(
    env: Env, mixed: list[dict[str, Any]], filters: dict[str, Any]
) -> None:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    expected = _where(mixed, **filters)
    assert env.ids(query) == expected
    seen, _ = env.walk(query, 2)
    assert seen == expected


def test_gateway_filter_ignores_rows_without_that_gateway(
    env: Env, mixed: list[dict[str, Any]]
) -> None:
    unrouted = [row["id"] for row in mixed if row["routing_gateway_id"] is None]
    assert len(unrouted) == 1
    everything = set(env.ids("routing_gateway_id=10")) | set(env.ids("routing_gateway_id=20"))
    assert everything == {row["id"] for row in mixed} - set(unrouted)


def test_filter_with_sparse_matches_never_skips_a_page_boundary(env: Env) -> None:
    wanted: list[int] = []
    for i in range(30):
        row = env.insert(mapping_gateway_id=7 if i % 4 == 0 else 8)
        if i % 4 == 0:
            wanted.append(row["id"])
    seen, pages = env.walk("mapping_gateway_id=7", 3)
    assert seen == wanted
    assert pages == 3


# --- one CDR -------------------------------------------------------------------------


def test_final_code_and_termination_reason_filters(env: Env) -> None:
    rows = [env.insert(final_code=code, termination_reason=why)
            for code, why in ((200, "caller BYE"), (486, "callee busy"), (200, "operator"),
                              (503, "no route"), (486, "callee busy"))]
    ids = [row["id"] for row in rows]
    assert env.ids("final_code=486") == [ids[1], ids[4]]
    assert env.ids("termination_reason=operator") == [ids[2]]
    assert env.ids("final_code=200&termination_reason=caller%20BYE") == [ids[0]]
    assert env.ids("final_code=404") == []
    for query, field in (("final_code=99", "final_code"), ("final_code=x", "final_code"),
                         ("termination_reason=", "termination_reason")):
        resp = env.get(query)
        assert resp.status_code == 422 and set(resp.get_json()["errors"]) == {field}, query


def test_get_one_cdr_and_404(env: Env) -> None:
    rows = [env.insert() for _ in range(3)]
    for row in rows:
        resp = env.client.get(f"{URL}/{row['id']}", headers=auth(env.admin))
        assert resp.status_code == 200 and resp.get_json() == {**row, "attempts": []}
    problem = assert_problem(env.client.get(f"{URL}/9999", headers=auth(env.admin)), 404)
    assert "9999" in problem["detail"]
    assert_problem(env.client.get(f"{URL}/abc", headers=auth(env.admin)), 404)


# --- bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=abc", "since"),
        ("since=", "since"),
        ("since=2024-01-01", "since"),
        ("until=yesterday", "until"),
        ("mapping_gateway_id=x", "mapping_gateway_id"),
        ("mapping_gateway_id=-1", "mapping_gateway_id"),
        ("mapping_gateway_id=", "mapping_gateway_id"),
        ("routing_gateway_id=1.5", "routing_gateway_id"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=1001", "limit"),
        ("after_id=-1", "after_id"),
        ("after_id=abc", "after_id"),
    ],
)
def test_bad_query_argument_is_422(env: Env, query: str, field: str) -> None:
    env.insert()
    problem = assert_problem(env.get(query), 422)
    assert field in problem["errors"], problem


@pytest.mark.parametrize("query", ["since=nan", "until=nan", "since=NaN&until=200"])
def test_not_a_number_time_is_422(env: Env, query: str) -> None:
    """``since=nan`` binds NULL in SQLite and silently matches no row; it must be refused."""
    env.insert(start_at=150.0)
    problem = assert_problem(env.get(query), 422)
    assert set(problem["errors"]) & {"since", "until"}, problem


# --- OpenAPI -------------------------------------------------------------------------


def _spec(env: Env) -> dict[str, Any]:
    resp = env.client.get("/api/v1/openapi.json", headers=auth(env.admin))
    assert resp.status_code == 200
    spec: dict[str, Any] = resp.get_json()
    return spec


def test_openapi_documents_the_cdr_filters(env: Env) -> None:
    get = _spec(env)["paths"][URL]["get"]
    params = {p["name"]: p for p in get["parameters"]}
    assert set(params) == {"limit", "after_id", "since", "until", "mapping_gateway_id",
                           "routing_gateway_id", "since_id", "caller", "callee", "tail",
                           "final_code", "termination_reason"}
    assert all(p["in"] == "query" and p["required"] is False for p in params.values())
    assert params["since"]["schema"]["type"] == "number"
    assert params["until"]["schema"]["type"] == "number"
    assert "start_at" in params["since"]["description"]
    assert "start_at" in params["until"]["description"]
    assert params["mapping_gateway_id"]["schema"]["type"] == "integer"
    assert params["routing_gateway_id"]["schema"]["type"] == "integer"
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CdrPage"
    }


def test_openapi_documents_the_cdr_schema_and_one_cdr(env: Env) -> None:
    spec = _spec(env)
    cdr = spec["components"]["schemas"]["Cdr"]
    columns = set(env.insert())  # every column of the table, as stored
    assert set(cdr_row()) | {"id"} <= columns
    assert columns == set(cdr["properties"])
    one = spec["paths"][f"{URL}/{{cdr_id}}"]["get"]
    assert {"200", "401", "404"} <= set(one["responses"])
    assert one["parameters"][0]["name"] == "cdr_id"


def test_openapi_documents_422_for_bad_cdr_filters(env: Env) -> None:
    responses = _spec(env)["paths"][URL]["get"]["responses"]
    # since=abc, limit=0 ... answer 422 (see test_bad_query_argument_is_422)
    assert "422" in responses, sorted(responses)
    assert responses["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
