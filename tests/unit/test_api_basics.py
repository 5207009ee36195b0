"""API authentication, errors as problem JSON, parameters, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apitest import assert_problem, auth, make_api
from flask.testing import FlaskClient

from b2bua.storage import audit, open_database, params_store

pytestmark = pytest.mark.both_backends


@pytest.fixture
def client_and_tokens(tmp_path: Path, backend_db: str | None
                      ) -> Iterator[tuple[FlaskClient, str, str, str]]:
    setup = make_api(tmp_path, backend_db)
    yield setup.client, setup.admin, setup.reader, setup.target


def test_health_needs_no_token_and_reports_engine_down(client_and_tokens: Any) -> None:
    client, *_ = client_and_tokens
    resp = client.get("/api/v1/health")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "engine": "down", "database": "up"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"},
     {"Authorization": "Bearer sst_wrong"}],
)
def test_missing_or_bad_token_is_401(client_and_tokens: Any, headers: dict[str, str]) -> None:
    client, *_ = client_and_tokens
    for path in ("/api/v1/parameters", "/api/v1/openapi.json", "/api/v1/engine"):
        resp = client.get(path, headers=headers)
        assert_problem(resp, 401)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_read_token_reads_but_cannot_change(client_and_tokens: Any) -> None:
    client, _, reader, _ = client_and_tokens
    assert client.get("/api/v1/parameters", headers=auth(reader)).status_code == 200
    resp = client.put("/api/v1/parameters/SS_SIP_TIMEOUT_INVITE", json={"value": 5},
                      headers=auth(reader))
    assert_problem(resp, 403)


def test_list_and_get_parameters(client_and_tokens: Any) -> None:
    client, admin, *_ = client_and_tokens
    items = client.get("/api/v1/parameters", headers=auth(admin)).get_json()["items"]
    names = [i["name"] for i in items]
    assert "SS_REPLY_UNAUTHORIZED" in names and len(names) == len(set(names))
    one = client.get("/api/v1/parameters/ss_sip_timeout_invite", headers=auth(admin)).get_json()
    assert one["name"] == "SS_SIP_TIMEOUT_INVITE"
    assert (one["value"], one["default"], one["minimum"], one["maximum"]) == (10, 10, 1, 300)
    assert_problem(client.get("/api/v1/parameters/SS_NOPE", headers=auth(admin)), 404)


def test_put_parameter_changes_the_stored_value(client_and_tokens: Any) -> None:
    client, admin, _, target = client_and_tokens
    resp = client.put("/api/v1/parameters/SS_REPLY_UNAUTHORIZED", json={"value": "off"},
                      headers=auth(admin))
    assert resp.status_code == 200 and resp.get_json()["value"] == "Off"
    with open_database(target) as database:
        assert params_store.load_values(database)["SS_REPLY_UNAUTHORIZED"] == "Off"
        [entry] = audit.entries(database, after_id=0, limit=10)
    assert (entry["actor"], entry["action"], entry["resource"], entry["detail"]) == (
        "token:ops", "update", "parameter/SS_REPLY_UNAUTHORIZED", {"value": "Off"})


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("SS_SIP_TIMEOUT_INVITE", {"value": 0}, "at least 1"),
        ("SS_SIP_TIMEOUT_INVITE", {"value": 301}, "at most 300"),
        ("SS_SIP_TIMEOUT_INVITE", {"value": "ten"}, "integer"),
        ("SS_REPLY_UNAUTHORIZED", {"value": 3}, "On"),
        ("SS_SIP_AUTHENTICATION_CODE", {"value": 403}, "one of 401, 407"),
        ("SS_RTPENCRYPTIONMODE", {"value": 3}, "exactly 16 bytes"),
    ],
)
def test_invalid_value_is_422_with_field_message_and_nothing_stored(
    client_and_tokens: Any, name: str, body: dict[str, Any], message: str
) -> None:
    client, admin, *_ = client_and_tokens
    before = client.get(f"/api/v1/parameters/{name}", headers=auth(admin)).get_json()["value"]
    problem = assert_problem(
        client.put(f"/api/v1/parameters/{name}", json=body, headers=auth(admin)), 422
    )
    assert any(message in m for m in problem["errors"]["value"]), problem
    after = client.get(f"/api/v1/parameters/{name}", headers=auth(admin)).get_json()["value"]
    assert before == after


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", "{}"])
def test_malformed_body_is_422(client_and_tokens: Any, raw: str) -> None:
    client, admin, *_ = client_and_tokens
    resp = client.put("/api/v1/parameters/SS_SIP_TIMEOUT_INVITE", data=raw,
                      headers={**auth(admin), "Content-Type": "application/json"})
    problem = assert_problem(resp, 422)
    assert problem["errors"]


def test_unknown_route_and_method_are_problems(client_and_tokens: Any) -> None:
    client, admin, *_ = client_and_tokens
    assert_problem(client.get("/api/v1/nothing-here", headers=auth(admin)), 404)
    assert_problem(client.delete("/api/v1/parameters", headers=auth(admin)), 405)


def test_engine_status_is_503_when_engine_is_down(client_and_tokens: Any) -> None:
    client, admin, *_ = client_and_tokens
    assert_problem(client.get("/api/v1/engine", headers=auth(admin)), 503)


def test_openapi_document_is_generated_from_schemas(client_and_tokens: Any) -> None:
    client, admin, *_ = client_and_tokens
    spec = client.get("/api/v1/openapi.json", headers=auth(admin)).get_json()
    assert spec["openapi"].startswith("3.")
    put = spec["paths"]["/api/v1/parameters/{name}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ParameterUpdate"
    }
    assert {"200", "401", "403", "404", "422"} <= set(put["responses"])
    assert put["parameters"][0]["name"] == "name"
    schema = spec["components"]["schemas"]["Parameter"]
    assert "value" in schema["properties"] and "live" in schema["required"]
    assert spec["paths"]["/api/v1/health"]["get"]["security"] == []
