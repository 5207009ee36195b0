"""Webhooks over the REST API and the command line: CRUD, validation, the write-only
secret, ETags, audit, the reload counter, and the list's delivery state from the engine."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apitest import ApiSetup, assert_problem, auth, make_api
from werkzeug.serving import make_server

from b2bua import ipc
from b2bua.cli import main
from b2bua.storage.webhooks import webhook_receivers

pytestmark = pytest.mark.both_backends

URL = "/api/v1/webhooks"
SECRET = "0123456789abcdef-secret"
HOOK = {"name": "crm", "url": "https://crm.example.net/hooks?site=1", "secret": SECRET}


@pytest.fixture
def setup(tmp_path: Path, backend_db: str | None) -> ApiSetup:
    return make_api(tmp_path, backend_db)


def create(setup: ApiSetup, body: dict[str, Any]) -> dict[str, Any]:
    resp = setup.client.post(URL, json=body, headers=auth(setup.admin))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.headers["ETag"]
    created: dict[str, Any] = resp.get_json()
    return created


def test_create_read_change_delete(setup: ApiSetup) -> None:
    created = create(setup, HOOK)
    assert {k: created[k] for k in ("name", "url", "events", "enabled")} == {
        "name": "crm", "url": HOOK["url"], "events": [], "enabled": True}
    assert "secret" not in created and "delivery" not in created
    one = f"{URL}/{created['id']}"
    read = setup.client.get(one, headers=auth(setup.reader))
    etag = read.headers["ETag"]
    changed = setup.client.patch(one, json={"events": ["call.end", "call.end", "registration"]},
                                 headers={**auth(setup.admin), "If-Match": etag})
    assert changed.status_code == 200 and changed.get_json()["events"] == ["call.end",
                                                                          "registration"]
    stale = setup.client.patch(one, json={"enabled": False},
                               headers={**auth(setup.admin), "If-Match": etag})
    assert_problem(stale, 412)
    with setup.database() as database:
        (receiver,) = webhook_receivers(database)
        assert receiver.secret == SECRET and receiver.events == {"call.end", "registration"}
        assert database.value("SELECT version FROM config_versions "
                              "WHERE table_name = 'webhooks'") == 2
        details = [json.loads(r["detail"] or "{}") for r in database.rows(
            "SELECT detail FROM audit_log WHERE resource LIKE 'webhooks/%' ORDER BY id")]
    assert details[0]["secret"] == "***" and SECRET not in json.dumps(details)
    replaced = setup.client.put(one, json={"name": "crm", "url": "http://10.0.0.5:8080/x"},
                                headers=auth(setup.admin))
    assert replaced.status_code == 200 and replaced.get_json()["events"] == []
    assert setup.client.delete(one, headers=auth(setup.admin)).status_code == 204
    assert setup.client.get(URL, headers=auth(setup.reader)).get_json()["items"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://crm.example.net/"}, "url"),
    ({"url": "http:///path"}, "url"),
    ({"url": "https://user:pw@crm.example.net/"}, "url"),
    ({"url": "https://crm.example.net/#x"}, "url"),
    ({"url": "https://crm.example.net:99999/"}, "url"),
    ({"url": "https://crm.example.net/a b"}, "url"),
    ({"events": ["call.ring"]}, "events"),
    ({"secret": "short"}, "secret"),
    ({"secret": None}, "secret"),
    ({"name": ""}, "name"),
])
def test_invalid_fields_are_refused(setup: ApiSetup, body: dict[str, Any], field: str
                                    ) -> None:
    fields = {**HOOK, **body}
    if fields.get("secret") is None:
        del fields["secret"]
    problem = assert_problem(setup.client.post(URL, json=fields, headers=auth(setup.admin)),
                             422)
    assert field in problem["errors"]


def test_a_reader_cannot_write_and_names_are_unique(setup: ApiSetup) -> None:
    assert_problem(setup.client.post(URL, json=HOOK, headers=auth(setup.reader)), 403)
    create(setup, HOOK)
    assert_problem(setup.client.post(URL, json=HOOK, headers=auth(setup.admin)), 409)


class FakeEngine:
    """Answers the control socket's ``webhooks`` request with a fixed report."""

    def __init__(self, path: Path, report: list[dict[str, Any]]) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        self.report = report
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = ipc.recv(conn)
                assert request["op"] == "webhooks"
                conn.sendall(ipc.encode({"ok": True, "result": self.report}))


def test_the_list_carries_each_webhooks_delivery_state(setup: ApiSetup) -> None:
    first, second = create(setup, HOOK), create(setup, {**HOOK, "name": "billing"})
    items = setup.client.get(URL, headers=auth(setup.reader)).get_json()["items"]
    assert [i["delivery"] for i in items] == [None, None]  # no engine answers
    state = {"id": first["id"], "queued": 3, "in_flight": 1, "retrying_lanes": 1,
             "delivered": 10, "failed_attempts": 4, "dead_lettered": 0,
             "dead_letters_dropped": 0, "last_status": None, "last_error": "timed out",
             "last_error_at": 5.0, "last_attempt_at": 5.0, "last_delivered_at": 4.0,
             "oldest_queued_age": 12.5}
    engine = FakeEngine(setup.control, [state])
    try:
        page = setup.client.get(URL, headers=auth(setup.reader)).get_json()
        by_name = {i["name"]: i for i in page["items"]}
        assert by_name["crm"]["delivery"] == {k: v for k, v in state.items() if k != "id"}
        assert by_name["billing"]["delivery"] is None  # not loaded by the engine yet
        one = setup.client.get(f"{URL}/{second['id']}", headers=auth(setup.reader))
        assert "delivery" not in one.get_json()
    finally:
        engine.sock.close()


@pytest.fixture
def served(setup: ApiSetup) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, setup.client.application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def test_command_line(setup: ApiSetup, served: str, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--api", served, "--token", setup.admin]
    assert main(["webhook", "add", "--name", "crm", "--url", "http://127.0.0.1:9000/h",
                 "--event", "call.end", *common]) == 0
    out = capsys.readouterr().out
    assert "created webhook" in out and "secret (shown once" in out
    secret = out.rsplit(": ", 1)[1].strip()
    assert len(secret) == 64
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    assert main(["webhook", "add", "--name", "billing", "--url", "https://b.example/",
                 "--secret-file", str(secret_file), *common]) == 0
    assert "shown once" not in capsys.readouterr().out
    with setup.database() as database:
        assert {r.name: r.secret for r in webhook_receivers(database)} == {
            "crm": secret, "billing": SECRET}
    assert main(["webhook", "set", "crm", "enabled=false", "events=call.start,call.end",
                 *common]) == 0
    capsys.readouterr()
    assert main(["webhook", "list", *common]) == 0
    listing = capsys.readouterr().out
    assert "call.start,call.end" in listing and "billing" in listing
    assert main(["webhook", "list", "--json", "--disabled", *common]) == 0
    (only,) = json.loads(capsys.readouterr().out)
    assert only["name"] == "crm" and only["enabled"] is False
    assert main(["webhook", "add", "--name", "bad", "--url", "ftp://x/", *common]) == 1
    assert "url" in capsys.readouterr().err
    assert main(["webhook", "remove", "billing", *common]) == 0
    assert "deleted webhook" in capsys.readouterr().out
