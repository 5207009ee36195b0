"""GET /calls/ID/sip and /cdrs/ID/sip (api/routes/ladders.py) against a fake engine and
fake cluster peers: the ladder from the engine, from the node a CDR names, and the 404s
that say why there is none."""

from __future__ import annotations

import io
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from apitest import ApiSetup, assert_problem, auth, make_api
from test_api_cdrs import cdr_row

from api import cluster_merge
from api.routes import calls, ladders
from b2bua.storage import open_database
from b2bua.storage.cluster import NodeRow

LADDER = {"call": {"id": 4, "state": "ended"}, "participants": [], "messages": [],
          "omitted": 0}


class Cluster:
    """The engine's answers and the other nodes' APIs, as the routes see them."""

    def __init__(self, node: str | None) -> None:
        self.node = node
        self.ladder: dict[str, Any] = {"found": True, "ladder": LADDER}
        self.asked: list[dict[str, Any]] = []
        self.peer_asked: list[tuple[str, str]] = []
        self.peer_credentials: list[tuple[str, dict[str, str]]] = []
        self.peer_status = 200

    def engine(self, op: str, **args: Any) -> Any:
        if op == "cluster":
            return None if self.node is None else {
                "node": self.node, "watch": {"nodes": {"n2": "alive", "n3": "dead"}}}
        if op == "hangup":
            self.asked.append({"hangup": args})
            return {"found": args["call"] == 4}
        assert op == "sip_ladder"
        self.asked.append(args)
        return self.ladder

    def ask(self, address: str, path: str, credentials: dict[str, str],
            method: str = "GET") -> Any:
        self.peer_asked.append((address, path))
        self.peer_credentials.append((method, credentials))
        if self.peer_status != 200:
            raise urllib.error.HTTPError(
                "http://x", self.peer_status, "no", {},  # type: ignore[arg-type]
                io.BytesIO(b'{"status": 404, "detail": "expired: on n2"}'))
        return {**LADDER, "call": {"id": 4, "state": "ended", "node": "n2"}}


@pytest.fixture
def api(tmp_path: Path) -> ApiSetup:
    return make_api(tmp_path)


def fake(monkeypatch: pytest.MonkeyPatch, node: str | None) -> Cluster:
    cluster = Cluster(node)
    monkeypatch.setattr(ladders, "engine_request", cluster.engine)
    monkeypatch.setattr(cluster_merge, "engine_request", cluster.engine)
    monkeypatch.setattr(cluster_merge, "_ask", cluster.ask)
    monkeypatch.setattr(cluster_merge.cluster, "nodes", lambda _db: [
        NodeRow("n1", "127.0.0.1:5060", "127.0.0.1:8088", 1.0),
        NodeRow("n2", "127.0.0.2:5060", "127.0.0.2:8088", 1.0),
        NodeRow("n3", "127.0.0.3:5060", "127.0.0.3:8088", 1.0)])
    return cluster


def cdr(api: ApiSetup, **fields: Any) -> int:
    row = cdr_row(**fields)
    with open_database(api.target) as database:
        return int(database.insert(
            f"INSERT INTO cdrs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) "
            "RETURNING id", tuple(row.values())))


def get(api: ApiSetup, path: str) -> Any:
    return api.client.get(path, headers=auth(api.reader))


def test_a_cdrs_ladder_comes_from_the_engine_by_its_uuid(
        api: ApiSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = fake(monkeypatch, None)
    cdr_id = cdr(api, cdr_uuid="u-1", node=None)
    resp = get(api, f"/api/v1/cdrs/{cdr_id}/sip")
    assert resp.status_code == 200 and resp.get_json() == LADDER
    assert cluster.asked == [{"cdr_uuid": "u-1"}]


def test_a_cdr_of_another_node_is_asked_of_that_node(
        api: ApiSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = fake(monkeypatch, "n1")
    mine, theirs, dead = (cdr(api, cdr_uuid=f"u-{n}", node=n) for n in ("n1", "n2", "n3"))
    assert get(api, f"/api/v1/cdrs/{mine}/sip").status_code == 200
    assert cluster.asked == [{"cdr_uuid": "u-n1"}] and cluster.peer_asked == []

    resp = get(api, f"/api/v1/cdrs/{theirs}/sip")
    assert resp.status_code == 200 and resp.get_json()["call"]["node"] == "n2"
    assert cluster.peer_asked == [("127.0.0.2:8088", f"/api/v1/cdrs/{theirs}/sip")]
    cluster.peer_status = 404
    body = assert_problem(get(api, f"/api/v1/cdrs/{theirs}/sip"), 404)
    assert body["detail"] == "expired: on n2"

    body = assert_problem(get(api, f"/api/v1/cdrs/{dead}/sip"), 404)
    assert "node 'n3' is not up" in body["detail"]
    # What the nodes ask each other: this node's own answer, never passed on.
    assert get(api, f"/api/v1/cdrs/{theirs}/sip?scope=node").status_code == 200
    assert cluster.asked[-1] == {"cdr_uuid": "u-n2"}


def test_a_calls_ladder_on_another_node(api: ApiSetup, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    cluster = fake(monkeypatch, "n1")
    assert get(api, "/api/v1/calls/4/sip").status_code == 200
    assert get(api, "/api/v1/calls/4/sip?node=n1").status_code == 200
    assert cluster.asked == [{"call": 4}, {"call": 4}]
    assert get(api, "/api/v1/calls/4/sip?node=n2").get_json()["call"]["node"] == "n2"
    assert cluster.peer_asked == [("127.0.0.2:8088", "/api/v1/calls/4/sip")]
    assert_problem(get(api, "/api/v1/calls/4/sip?node=n9"), 404)


@pytest.mark.parametrize(("reason", "cdr_fields", "says"), [
    ("answered", {}, "the call was answered and SS_SIP_LADDERS is Failed"),
    ("off", {}, "SS_SIP_LADDERS was Off"),
    ("expired", {}, "SS_SIP_LADDERS_AGE (3600 s)"),
    ("evicted", {}, "SS_SIP_LADDERS_SIZE (64 MiB)"),
    # The engine no longer knows the call: the CDR tells.
    ("unknown", {}, "answered and SS_SIP_LADDERS is Failed"),
    ("unknown", {"answer_at": None, "end_at": 1000.0}, "expired"),
    ("unknown", {"answer_at": None, "end_at": 1e12}, "the engine restarted since"),
])
def test_why_a_cdr_has_no_ladder(api: ApiSetup, monkeypatch: pytest.MonkeyPatch,
                                 reason: str, cdr_fields: dict[str, Any], says: str) -> None:
    cluster = fake(monkeypatch, None)
    cluster.ladder = {"found": False, "reason": reason, "policy": "Failed", "age": 3600,
                      "size": 64}
    cdr_id = cdr(api, cdr_uuid="u-1", **cdr_fields)
    body = assert_problem(get(api, f"/api/v1/cdrs/{cdr_id}/sip"), 404)
    assert body["detail"].startswith(f"no SIP ladder for CDR {cdr_id}: ")
    assert says in body["detail"]


def test_no_cdr_or_one_without_its_uuid(api: ApiSetup, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    fake(monkeypatch, None)
    assert_problem(get(api, "/api/v1/cdrs/77/sip"), 404)
    cdr_id = cdr(api, cdr_uuid=None)
    assert "before calls had a cdr_uuid" in assert_problem(
        get(api, f"/api/v1/cdrs/{cdr_id}/sip"), 404)["detail"]


def test_the_engine_down_is_503(api: ApiSetup) -> None:
    cdr_id = cdr(api, cdr_uuid="u-1")
    assert_problem(get(api, f"/api/v1/cdrs/{cdr_id}/sip"), 503)
    assert_problem(get(api, "/api/v1/calls/1/sip"), 503)


def test_what_the_peers_are_asked_with(api: ApiSetup, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    """The caller's token, or its console session's cookie and CSRF token: the peers
    judge the same caller (the session key and the operators are shared)."""
    cluster = fake(monkeypatch, "n1")
    api.client.set_cookie("softswitch_console", "s")
    headers = {**auth(api.reader), "X-Other": "x"}
    assert api.client.get("/api/v1/calls/4/sip?node=n2", headers=headers).status_code == 200
    assert cluster.peer_credentials == [("GET", {"Authorization": f"Bearer {api.reader}",
                                                 "Cookie": "softswitch_console=s"})]


def test_an_operator_hangs_up_a_call_on_another_node(
        api: ApiSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = fake(monkeypatch, "n1")
    monkeypatch.setattr(calls, "engine_request", cluster.engine)
    resp = api.client.delete("/api/v1/calls/4?node=n2", headers=auth(api.admin))
    assert resp.status_code == 200 and cluster.asked == []
    assert cluster.peer_asked == [("127.0.0.2:8088", "/api/v1/calls/4")]
    assert cluster.peer_credentials[0][0] == "DELETE"
    resp = api.client.delete("/api/v1/calls/4?node=n1", headers=auth(api.admin))
    assert resp.status_code == 200 and cluster.asked == [{"hangup": {"call": 4}}]
    assert_problem(api.client.delete("/api/v1/calls/5", headers=auth(api.admin)), 404)
    assert_problem(api.client.delete("/api/v1/calls/4", headers=auth(api.reader)), 403)
    cluster.peer_status = 404
    assert_problem(api.client.delete("/api/v1/calls/4?node=n2", headers=auth(api.admin)), 404)
