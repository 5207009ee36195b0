"""POST /api/v1/routing/test under Flask's test client: validation, the origin looked up
by id or name, read tokens allowed, nothing audited; the engine faked where it answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apitest import ApiSetup, assert_problem, auth, make_api

from api.routes import routing

PATH = "/api/v1/routing/test"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiSetup]:
    setup = make_api(tmp_path)
    resp = setup.client.post("/api/v1/mapping-gateways", headers=auth(setup.admin),
                             json={"name": "custA", "ips": ["192.0.2.1"]})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    resp = setup.client.post("/api/v1/phones", headers=auth(setup.admin),
                             json={"username": "2001", "password": "secret"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    yield setup


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The engine's answers faked: each request is recorded; origin id 99 is unknown."""
    asked: list[dict[str, Any]] = []

    def answer(op: str, **args: Any) -> Any:
        asked.append({"op": op, **args})
        if args.get("origin_id") == 99:
            return {"unknown": args["origin"]}
        return {"asked": args}

    monkeypatch.setattr(routing, "engine_request", answer)
    return asked


def post(api: ApiSetup, body: Any, token: str | None = None) -> Any:
    return api.client.post(PATH, headers=auth(token or api.admin), json=body)


@pytest.mark.parametrize(("body", "field"), [
    ({"callee": "4420", "mapping_gateway": 1}, "caller"),
    ({"caller": "1001", "mapping_gateway": 1}, "callee"),
    ({"caller": "1001", "callee": "4" * 129, "mapping_gateway": 1}, "callee"),
    ({"caller": "", "callee": "4420", "mapping_gateway": 1}, "caller"),
    ({"caller": "10 01", "callee": "4420", "mapping_gateway": 1}, "caller"),
    ({"caller": "1001", "callee": "44\n", "mapping_gateway": 1}, "callee"),
    ({"caller": "1001", "callee": "4420"}, "mapping_gateway"),
    ({"caller": "1001", "callee": "4420", "mapping_gateway": 1, "phone": "2001"},
     "mapping_gateway"),
    ({"caller": "1001", "callee": "4420", "mapping_gateway": True}, "mapping_gateway"),
    ({"caller": "1001", "callee": "4420", "mapping_gateway": 1.5}, "mapping_gateway"),
    ({"caller": "1001", "callee": "4420", "mapping_gateway": 0}, "mapping_gateway"),
    ({"caller": "1001", "callee": "4420", "mapping_gateway": "x" * 65}, "mapping_gateway"),
    ({"caller": "1001", "callee": "4420", "mapping_gateway": 1, "extra": 1}, "extra"),
    ({"caller": "1001", "callee": "4420", "phone": "no such/user"}, "phone"),
])
def test_missing_oversized_or_malformed_fields_are_422(api: ApiSetup, body: dict[str, Any],
                                                       field: str) -> None:
    problem = assert_problem(post(api, body), 422)
    assert field in problem["errors"], problem


def test_a_body_that_is_not_an_object_is_422(api: ApiSetup) -> None:
    assert_problem(post(api, ["1001", "4420"]), 422)


@pytest.mark.parametrize(("ref", "shown"), [(2, "2"), ("nobody", "'nobody'")])
def test_an_unknown_mapping_gateway_is_a_field_error(api: ApiSetup, ref: int | str,
                                                     shown: str) -> None:
    problem = assert_problem(
        post(api, {"caller": "1001", "callee": "4420", "mapping_gateway": ref}), 422)
    assert problem["errors"] == {"mapping_gateway": [f"no mapping gateway {shown}"]}


def test_an_unknown_phone_is_a_field_error(api: ApiSetup) -> None:
    problem = assert_problem(post(api, {"caller": "1001", "callee": "4420",
                                        "phone": "2002"}), 422)
    assert problem["errors"] == {"phone": ["no phone '2002'"]}


def test_the_engine_down_is_503(api: ApiSetup) -> None:
    problem = assert_problem(
        post(api, {"caller": "1001", "callee": "4420", "mapping_gateway": 1}), 503)
    assert problem["detail"].startswith("engine unavailable")


@pytest.mark.parametrize("ref", [1, "custA"])
def test_the_engine_is_asked_with_the_gateways_id(api: ApiSetup, engine: list[dict[str, Any]],
                                                  ref: int | str) -> None:
    resp = post(api, {"caller": "1001", "callee": "4420", "mapping_gateway": ref})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert engine == [{"op": "route_test", "origin": "mapping_gateway", "origin_id": 1,
                       "caller": "1001", "callee": "4420"}]


def test_a_phone_origin_is_asked_by_username(api: ApiSetup, engine: list[dict[str, Any]]
                                             ) -> None:
    resp = post(api, {"caller": "2001", "callee": "+4420", "phone": "2001"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert engine[0]["origin"] == "phone" and engine[0]["origin_id"] == "2001"


def test_a_gateway_the_engine_has_not_loaded_yet_is_503_with_retry_after(
        api: ApiSetup, engine: list[dict[str, Any]]) -> None:
    with api.database() as db:
        db.execute("UPDATE mapping_gateways SET id = 99 WHERE id = 1")
    resp = post(api, {"caller": "1001", "callee": "4420", "mapping_gateway": "custA"})
    problem = assert_problem(resp, 503)
    assert "not loaded" in problem["detail"] and resp.headers["Retry-After"] == "1"


def test_a_read_token_may_ask_and_nothing_is_audited(api: ApiSetup,
                                                     engine: list[dict[str, Any]]) -> None:
    def audit_rows() -> int:
        rows = api.client.get("/api/v1/audit", headers=auth(api.admin)).get_json()["items"]
        return len(rows)

    before = audit_rows()
    resp = post(api, {"caller": "1001", "callee": "4420", "mapping_gateway": 1}, api.reader)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert audit_rows() == before
    # The exception is this endpoint's: other POSTs stay refused to a read token.
    refused = api.client.post("/api/v1/mapping-gateways", headers=auth(api.reader),
                              json={"name": "custB", "ips": ["192.0.2.2"]})
    assert_problem(refused, 403)


def test_no_token_is_401(api: ApiSetup) -> None:
    resp = api.client.post(PATH, json={"caller": "1001", "callee": "4420",
                                       "mapping_gateway": 1})
    assert_problem(resp, 401)
