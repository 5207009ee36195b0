"""An operator's day, end to end, against a real ``softswitch run``: only the REST API and
the ``softswitch`` operator commands, never the database.

Create a customer trunk and a vendor with the CLI, a phone, change a parameter, see a
second operator's stale write refused, place five calls with sipp, pull the CDRs by
cursor in pages of two, follow them with ``cdr tail --follow``, export them as CSV, and
read the Prometheus metrics and the audit log.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import REPO, SOFTSWITCH, Softswitch, free_port, wait_until

CALLS = 5


def cli(switch: Softswitch, *args: str, stdin: str | None = None) -> str:
    """Run ``softswitch ARGS`` where an operator would: in the folder holding var/."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("SOFTSWITCH_TOKEN", None)  # the token comes from var/admin-token
    proc = subprocess.run([*SOFTSWITCH, *args, "--api", switch.api_base],
                          cwd=switch.workdir, input=stdin, capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def cli_json(switch: Softswitch, *args: str, stdin: str | None = None) -> Any:
    return json.loads(cli(switch, *args, "--json", stdin=stdin))


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in\n{text}"
    return float(match.group(1))


def test_operator_script(tmp_path: Path, softswitch: Softswitch) -> None:
    api = softswitch.api
    vendor_port = free_port(VENDOR_IP)

    # -- configuration through the CLI ----------------------------------------------------
    customer = cli_json(softswitch, "gw", "add", "mapping", "--name", "c1",
                        "--ip", CUSTOMER_IP, "--mode", "ip")
    vendor = cli_json(softswitch, "gw", "add", "routing", "--name", "v1",
                      "--host", VENDOR_IP, "--port", str(vendor_port),
                      "--prefix", "2", "--prefix", "9", "invite_timeout=5")
    assert (customer["auth_mode"], customer["ips"]) == ("ip", [CUSTOMER_IP])
    assert (vendor["prefixes"], vendor["invite_timeout"]) == (["2", "9"], 5)

    # a second operator reads the vendor, the first changes it with the CLI
    status, _, headers = api.call("GET", f"/api/v1/routing-gateways/{vendor['id']}")
    stale = headers["ETag"]
    out = cli(softswitch, "gw", "set", "routing", str(vendor["id"]), "priority=5")
    assert "priority=5" in out
    status, problem, _ = api.call("PATCH", f"/api/v1/routing-gateways/{vendor['id']}",
                                  {"priority": 0}, headers={"If-Match": stale})
    assert status == 412 and problem["status"] == 412, problem
    shown = cli(softswitch, "gw", "show", "routing", "v1")
    assert re.search(r"^priority\s+5$", shown, re.MULTILINE), shown

    listed = cli_json(softswitch, "gw", "list")
    assert [g["name"] for g in listed["mapping"]] == ["c1"]
    assert [g["name"] for g in listed["routing"]] == ["v1"]

    phone = cli_json(softswitch, "phone", "add", "--username", "3001", "--password-stdin",
                     "--display-name", "desk", stdin="Ph0ne-secret\n")
    assert phone["username"] == "3001" and "password" not in phone
    assert [p["username"] for p in cli_json(softswitch, "phone", "list")] == ["3001"]

    assert api.put("/api/v1/parameters/SS_REPLY_UNAUTHORIZED", {"value": "Off"})[
        "value"] == "Off"

    def engine_ready() -> bool:
        status = api.get("/api/v1/engine")
        return bool(status["mapping_gateways"] == 1 and status["routing_gateways"] == 1
                    and status["params"]["SS_REPLY_UNAUTHORIZED"] == "Off")

    assert wait_until(engine_ready, timeout=5), api.get("/api/v1/engine")

    # -- five calls, followed live by `cdr tail --follow` ---------------------------------
    follow_out = tmp_path / "follow.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(follow_out, "wb") as sink:
        follower = subprocess.Popen(
            [*SOFTSWITCH, "cdr", "tail", "--follow", "--since-id", "0", "--interval", "0.2",
             "--json", "--api", softswitch.api_base],
            cwd=softswitch.workdir, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        uas = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port, calls=CALLS)
        uac = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                   f"127.0.0.1:{softswitch.sip_port}", calls=CALLS, rate=10, hold_ms=200)
        try:
            assert uac.wait() == 0, uac.output() + softswitch.log()[-3000:]
            assert uas.wait() == 0, uas.output() + softswitch.log()[-3000:]
        finally:
            uac.stop()
            uas.stop()

        def followed() -> list[dict[str, Any]]:
            lines = follow_out.read_text().splitlines()
            return [json.loads(line) for line in lines if line.startswith("{")]

        assert wait_until(lambda: len(followed()) >= CALLS, timeout=10), \
            follow_out.read_text()
    finally:
        follower.terminate()
        follower.wait(10)

    # -- CDRs by cursor, pages of two ------------------------------------------------------
    seen: list[int] = []
    pages = 0
    after: int | None = 0
    while after is not None:
        page = api.get(f"/api/v1/cdrs?limit=2&after_id={after}")
        pages += 1
        assert len(page["items"]) <= 2
        seen += [c["id"] for c in page["items"]]
        after = page["next_after_id"]
    assert len(seen) == CALLS and len(set(seen)) == CALLS and seen == sorted(seen)
    assert pages == 3
    assert [c["id"] for c in followed()] == seen  # the follower saw each exactly once
    cdrs = api.get("/api/v1/cdrs?limit=100")["items"]
    assert all(c["final_code"] == 200 and c["routing_gateway"] == "v1"
               and c["mapping_gateway"] == "c1" for c in cdrs)
    # the billing poller's alias, and the caller/callee filters
    assert [c["id"] for c in api.get(f"/api/v1/cdrs?since_id={seen[1]}")["items"]] == seen[2:]
    assert len(api.get("/api/v1/cdrs?caller=1001&callee=2*")["items"]) == CALLS
    assert api.get("/api/v1/cdrs?callee=9*")["items"] == []
    tail_lines = cli(softswitch, "cdr", "tail", "-n", "2", "--json").splitlines()
    assert [json.loads(line)["id"] for line in tail_lines] == seen[-2:]
    assert cli(softswitch, "cdr", "tail", "--since-id", str(seen[-1])).strip() == ""

    # -- CSV export ---------------------------------------------------------------------------
    status, text, headers = api.call("GET", "/api/v1/cdrs.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["id"]) for r in rows] == seen
    assert {(r["caller"], r["callee"], r["final_code"]) for r in rows} == {("1001", "200",
                                                                              "200")}
    assert all(float(r["duration"]) > 0 and r["routing_gateway"] == "v1" for r in rows)
    status, text, headers = api.call("GET", f"/api/v1/cdrs.csv?limit=2&after_id={seen[0]}")
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(text))] == seen[1:3]
    assert headers["X-Next-After-Id"] == str(seen[2])

    # -- metrics --------------------------------------------------------------------------------
    status, text, headers = api.call("GET", "/api/v1/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert metric(text, "softswitch_engine_up") == 1
    assert metric(text, "softswitch_calls_answered_total") == CALLS
    assert metric(text, "softswitch_call_attempts_total") == CALLS
    assert metric(text, "softswitch_calls_active") == 0
    labels = f'{{gateway="v1",gateway_id="{vendor["id"]}"}}'
    assert metric(text, "softswitch_gateway_calls_total", labels) == CALLS
    assert metric(text, "softswitch_gateway_current_calls", labels) == 0
    assert "0 call(s) up" in cli(softswitch, "calls")

    # -- the audit log names who changed what ------------------------------------------------
    audit = api.get("/api/v1/audit?actor=token:admin&resource=routing-gateways")["items"]
    assert [(a["action"], a["resource"]) for a in audit] == [
        ("create", f"routing-gateways/{vendor['id']}"),
        ("update", f"routing-gateways/{vendor['id']}")]
    assert audit[1]["detail"]["priority"] == 5
    phones = api.get("/api/v1/audit?resource=phones")["items"]
    assert phones[0]["detail"]["password"] == "***"

    # -- clean up with the CLI ----------------------------------------------------------------
    cli(softswitch, "phone", "rm", "3001")
    cli(softswitch, "gw", "rm", "routing", "v1")
    assert cli_json(softswitch, "phone", "list") == []
    assert cli_json(softswitch, "gw", "list", "routing") == []
