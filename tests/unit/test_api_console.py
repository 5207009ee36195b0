"""The web console's accounts, sessions and CSRF under Flask's test client: operator
accounts (admins only), sign-in with lock-out counted in the database, the session
cookie authenticating the REST API, CSRF on a session's writes, read operators, audit
actors, sign-out, the security headers of every console response."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from apitest import ApiSetup, assert_problem, auth, make_api
from flask.testing import FlaskClient

from api.console import CSP, accounts
from b2bua.storage import audit, cluster, operators
from b2bua.storage.operators import LOCK_SECONDS, MAX_FAILURES

pytestmark = pytest.mark.both_backends

PASSWORD = "correct horse battery"


@pytest.fixture
def setup(tmp_path: Path, backend_db: str | None) -> ApiSetup:
    setup = make_api(tmp_path, backend_db)
    for name, role in (("alice", "admin"), ("rita", "read")):
        resp = setup.client.post("/api/v1/operators", headers=auth(setup.admin),
                                 json={"name": name, "role": role, "password": PASSWORD})
        assert resp.status_code == 201, resp.get_data(as_text=True)
    return setup


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf[-_]token"[^>]*(?:content|value)="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(client: FlaskClient, name: str, password: str = PASSWORD) -> Any:
    token = csrf_of(client.get("/console/login").get_data(as_text=True))
    return client.post("/console/login", data={"name": name, "password": password,
                                               "csrf_token": token})


def signed_in(client: FlaskClient, name: str) -> str:
    """Sign ``name`` in on ``client``; the CSRF token its pages carry."""
    resp = sign_in(client, name)
    assert resp.status_code == 303 and resp.headers["Location"] == "/console/"
    page = client.get("/console/")
    assert page.status_code == 200
    return csrf_of(page.get_data(as_text=True))


def test_accounts_are_for_admins_and_never_show_the_password(setup: ApiSetup) -> None:
    client = setup.client
    assert_problem(client.get("/api/v1/operators", headers=auth(setup.reader)), 403)
    items = client.get("/api/v1/operators", headers=auth(setup.admin)).get_json()["items"]
    assert [(i["name"], i["role"], i["locked_until"]) for i in items] == [
        ("alice", "admin", None), ("rita", "read", None)]
    assert all("password" not in i and "password_hash" not in i for i in items)
    body = assert_problem(client.post("/api/v1/operators", headers=auth(setup.admin),
                                      json={"name": "bob", "password": "short"}), 422)
    assert "password" in body["errors"]
    body = assert_problem(client.post("/api/v1/operators", headers=auth(setup.admin),
                                      json={"name": "<b>", "password": PASSWORD}), 422)
    assert "name" in body["errors"]
    body = assert_problem(client.post("/api/v1/operators", headers=auth(setup.admin),
                                      json={"name": "alice", "password": PASSWORD}), 409)
    assert body["errors"] == {"name": ["already exists"]}
    with setup.database() as db:
        stored = operators.with_hash(db, "alice")
        assert stored is not None and stored[1].startswith("scrypt:")
        entries = audit.entries(db, after_id=0, limit=10, resource_prefix="operators/")
    assert [(e["actor"], e["action"], e["detail"]) for e in entries] == [
        ("token:ops", "create", {"role": "admin", "password": "***"}),
        ("token:ops", "create", {"role": "read", "password": "***"})]


def test_sign_in_then_the_api_with_the_session_and_csrf(setup: ApiSetup) -> None:
    client = setup.client
    assert client.get("/console/").headers["Location"] == "/console/login"
    token = signed_in(client, "alice")
    assert client.get("/api/v1/parameters").status_code == 200  # the cookie, no token
    body = {"name": "gw1", "host": "192.0.2.1"}
    refused = assert_problem(client.post("/api/v1/routing-gateways", json=body), 403)
    assert "CSRF" in refused["detail"]
    wrong = client.post("/api/v1/routing-gateways", json=body,
                        headers={"X-CSRF-Token": "not-it"})
    assert_problem(wrong, 403)
    created = client.post("/api/v1/routing-gateways", json=body,
                          headers={"X-CSRF-Token": token})
    assert created.status_code == 201, created.get_data(as_text=True)
    with setup.database() as db:
        rows = audit.entries(db, after_id=0, limit=10, resource_prefix="routing-gateways")
        signs = audit.entries(db, after_id=0, limit=10, action="sign-in")
    assert [(r["actor"], r["action"]) for r in rows] == [("operator:alice", "create")]
    assert [(r["actor"], r["resource"]) for r in signs] == [("operator:alice",
                                                             "operators/alice")]


def test_a_bearer_token_needs_no_csrf_even_with_a_cookie(setup: ApiSetup) -> None:
    client = setup.client
    signed_in(client, "rita")  # a read operator's cookie rides along; the token decides
    resp = client.post("/api/v1/routing-gateways", headers=auth(setup.admin),
                       json={"name": "gw2", "host": "192.0.2.2"})
    assert resp.status_code == 201


def test_a_read_operator_may_only_read(setup: ApiSetup) -> None:
    client = setup.client
    token = signed_in(client, "rita")
    assert client.get("/api/v1/mapping-gateways").status_code == 200
    resp = client.post("/api/v1/mapping-gateways", json={"name": "x", "ips": ["192.0.2.9"]},
                       headers={"X-CSRF-Token": token})
    assert assert_problem(resp, 403)["detail"] == "this operator may only read"
    assert_problem(client.get("/api/v1/operators"), 403)
    page = client.get("/console/").get_data(as_text=True)
    assert 'name="operator-role" content="read"' in page


def test_lock_out_after_repeated_failures_whatever_the_password(setup: ApiSetup) -> None:
    client = setup.client
    for _ in range(MAX_FAILURES - 1):
        resp = sign_in(client, "alice", "wrong password")
        assert resp.status_code == 401 and accounts.REFUSED in resp.get_data(as_text=True)
    with setup.database() as db:
        before = operators.get(db, "alice")
        assert before is not None and before.failures == MAX_FAILURES - 1
    assert sign_in(client, "alice", "wrong again").status_code == 401
    with setup.database() as db:
        locked = operators.get(db, "alice")
        assert locked is not None and locked.locked(time.time())
        assert locked.locked_until and locked.locked_until > time.time() + LOCK_SECONDS - 60
        assert audit.entries(db, after_id=0, limit=5, action="lock")[0]["actor"] == "console"
    good = sign_in(client, "alice")  # the right password, refused the same way
    assert good.status_code == 401 and accounts.REFUSED in good.get_data(as_text=True)
    unknown = sign_in(client, "nobody")
    assert unknown.status_code == 401 and accounts.REFUSED in unknown.get_data(as_text=True)
    listed = client.get("/api/v1/operators/alice", headers=auth(setup.admin)).get_json()
    assert listed["locked_until"] is not None
    # An admin lifts it; the right password works again.
    assert client.post("/api/v1/operators/alice/unlock",
                       headers=auth(setup.admin)).status_code == 200
    assert sign_in(client, "alice").status_code == 303


def test_the_lock_ends_by_itself(setup: ApiSetup) -> None:
    with setup.database() as db:
        alice = operators.get(db, "alice")
        assert alice is not None
        for _ in range(MAX_FAILURES):
            operators.record_failure(db, alice.id, time.time() - LOCK_SECONDS - 1)
    assert sign_in(setup.client, "alice").status_code == 303


def test_sign_out_and_account_changes_end_sessions(setup: ApiSetup) -> None:
    client = setup.client
    token = signed_in(client, "alice")
    # A second browser of the same operator.
    other = setup.client.application.test_client()
    signed_in(other, "alice")
    assert other.get("/api/v1/parameters").status_code == 200
    resp = client.post("/console/logout", data={"csrf_token": token})
    assert resp.status_code == 303 and resp.headers["Location"] == "/console/login"
    assert_problem(client.get("/api/v1/parameters"), 401)
    assert_problem(other.get("/api/v1/parameters"), 401)  # every session of the account
    # A new password ends the sessions made with the old one.
    signed_in(other, "alice")
    resp = client.patch("/api/v1/operators/alice", headers=auth(setup.admin),
                        json={"password": "another long one"})
    assert resp.status_code == 200
    assert_problem(other.get("/api/v1/parameters"), 401)
    with setup.database() as db:
        outs = audit.entries(db, after_id=0, limit=5, action="sign-out")
        change = audit.entries(db, after_id=0, limit=5, action="update")
    assert [o["actor"] for o in outs] == ["operator:alice"]
    assert change[0]["detail"] == {"password": "***"}


def test_remove_and_unknown_accounts(setup: ApiSetup) -> None:
    client = setup.client
    signed_in(client, "rita")
    assert client.delete("/api/v1/operators/rita", headers=auth(setup.admin)).status_code == 204
    assert_problem(client.get("/api/v1/parameters"), 401)
    for method in ("get", "patch", "delete"):
        resp = getattr(client, method)("/api/v1/operators/rita", headers=auth(setup.admin),
                                       json={"role": "read"})
        assert_problem(resp, 404)
    assert_problem(client.post("/api/v1/operators/rita/unlock", headers=auth(setup.admin)),
                   404)


def test_console_headers_and_the_session_cookie(setup: ApiSetup) -> None:
    client = setup.client
    login = client.get("/console/login")
    for resp in (login, client.get("/console/static/console.css"),
                 client.get("/console/static/js/main.js")):
        assert resp.status_code == 200
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert login.headers["Cache-Control"] == "no-store"
    resp = sign_in(client, "alice")
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("softswitch_console=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Expires=" in cookie
    assert client.get("/console/vendor/../pyproject.toml").status_code == 404
    assert client.get("/console/vendor/uplot/package.json").status_code == 404


def test_the_signing_key_is_shared_through_the_database(setup: ApiSetup) -> None:
    """A second app (another gunicorn worker, another node) accepts the first's cookie."""
    client = setup.client
    signed_in(client, "alice")
    from api.app import create_app

    other = create_app(setup.target, setup.control).test_client()
    cookie = client.get_cookie("softswitch_console")
    assert cookie is not None
    other.set_cookie("softswitch_console", cookie.value)
    assert other.get("/api/v1/parameters").status_code == 200
    with setup.database() as db:
        assert len(cluster.shared_secret(db, "console_session_key", b"x" * 32)) == 32


def test_audit_tail_and_before_id(setup: ApiSetup) -> None:
    client = setup.client
    with setup.database() as db:
        for n in range(5):
            audit.record(db, "cli", "create", f"thing/{n}")
    everything = client.get("/api/v1/audit", headers=auth(setup.admin)).get_json()["items"]
    ids = [e["id"] for e in everything]
    newest = client.get("/api/v1/audit?tail=2", headers=auth(setup.admin)).get_json()
    assert [e["id"] for e in newest["items"]] == ids[-2:] and newest["next_after_id"] is None
    older = client.get(f"/api/v1/audit?tail=2&before_id={ids[-2]}",
                       headers=auth(setup.admin)).get_json()
    assert [e["id"] for e in older["items"]] == ids[-4:-2]
    assert_problem(client.get("/api/v1/audit?tail=2&limit=3", headers=auth(setup.admin)), 422)
