"""Call ladders and HEP export with a real softswitch and sipp peers (one softswitch for
the module): a failed call's ladder through its CDR, both legs and each vendor tried; an
answered call's while it is up, then not kept under the default and kept under
SS_SIP_LADDERS=All; and every message of a call received by sngrep listening for HEP."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sippctl import CUSTOMER_IP, VENDOR2_IP, VENDOR_IP, Sipp, sipp
from support import Softswitch, free_port, wait_until

from api.routes.ladders import SipLadderSchema

ANSWER_IP = "127.0.0.5"  # the vendor of the calls that are answered


class Switch:
    def __init__(self, softswitch: Softswitch, ports: dict[str, int]) -> None:
        self.softswitch = softswitch
        self.ports = ports

    @property
    def api(self) -> Any:
        return self.softswitch.api

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.softswitch.sip_port}"

    def param(self, name: str, value: Any) -> None:
        self.api.put(f"/api/v1/parameters/{name}", {"value": value})
        assert wait_until(lambda: self.api.get("/api/v1/engine")["params"][name] == value,
                          timeout=3)

    def cdr_of(self, callee: str, count: int = 1) -> dict[str, Any]:
        def mine() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = self.api.get("/api/v1/cdrs?tail=50")["items"]
            return [c for c in items if c["callee"] == callee]

        assert wait_until(lambda: len(mine()) >= count, timeout=10), self.softswitch.log()
        return mine()[-1]


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    softswitch = Softswitch(tmp_path_factory.mktemp("ladders")).start()
    try:
        api = softswitch.api
        ports = {"first": free_port(VENDOR_IP), "second": free_port(VENDOR2_IP),
                 "answer": free_port(ANSWER_IP)}
        api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
        # Calls to 44...: the first vendor refuses (503), the second is busy (486).
        api.post("/api/v1/routing-gateways", {"name": "first", "host": VENDOR_IP,
                                              "port": ports["first"], "prefixes": ["44"],
                                              "priority": 1})
        api.post("/api/v1/routing-gateways", {"name": "second", "host": VENDOR2_IP,
                                              "port": ports["second"], "prefixes": ["44"],
                                              "priority": 2})
        # Calls to 2...: answered.
        api.post("/api/v1/routing-gateways", {"name": "answer", "host": ANSWER_IP,
                                              "port": ports["answer"], "prefixes": ["2"]})
        assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 3,
                          timeout=3)
        yield Switch(softswitch, ports)
    finally:
        code = softswitch.stop()
        assert code == 0, softswitch.log()[-3000:]


def finish(*peers: Sipp, log: str = "") -> None:
    try:
        for peer in peers:
            assert peer.wait() == 0, peer.output() + log
    finally:
        for peer in peers:
            peer.stop()


def answered_call(tmp_path: Path, switch: Switch, callee: str, hold_ms: int,
                  caller_port: int = 0) -> tuple[Sipp, Sipp]:
    """An answered call to the answering vendor, hung up by the caller after
    ``hold_ms``: the caller's sipp and the vendor's."""
    vendor = sipp("uas_answer.xml", tmp_path, ANSWER_IP, switch.ports["answer"])
    caller = sipp("uac_call.xml", tmp_path, CUSTOMER_IP,
                  caller_port or free_port(CUSTOMER_IP), switch.target, service=callee,
                  hold_ms=hold_ms)
    return caller, vendor


def lines(view: dict[str, Any], leg: str) -> list[str]:
    """A leg's messages: direction and start line without the URI."""
    return [f"{m['direction']} {m['first_line'].split(' sip:')[0]}"
            for m in view["messages"] if m["leg"] == leg]


def test_a_failed_calls_ladder_has_both_legs_and_each_vendor_tried(
        tmp_path: Path, switch: Switch) -> None:
    first = sipp("uas_reject_503.xml", tmp_path, VENDOR_IP, switch.ports["first"])
    second = sipp("uas_busy.xml", tmp_path, VENDOR2_IP, switch.ports["second"])
    caller = sipp("uac_busy.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                  switch.target, service="4411")
    finish(caller, first, second, log=switch.softswitch.log()[-3000:])
    cdr = switch.cdr_of("4411")
    assert cdr["final_code"] == 486

    view = switch.api.get(f"/api/v1/cdrs/{cdr['id']}/sip")
    assert [(p["id"], p["role"], p["name"]) for p in view["participants"]] == [
        ("caller", "customer", "customer"), ("softswitch", "softswitch", "softswitch"),
        ("attempt-1", "vendor", "first"), ("attempt-2", "vendor", "second")]
    first_vendor = view["participants"][2]
    assert first_vendor["target"] == f"{VENDOR_IP}:{switch.ports['first']}"
    assert (first_vendor["outcome"], first_vendor["final_code"]) == ("failed", 503)
    call = view["call"]
    assert (call["cdr_uuid"], call["call_id_in"]) == (cdr["cdr_uuid"], cdr["call_id_in"])
    assert call["state"] == "ended" and call["final_code"] == 486
    assert lines(view, "caller") == ["in INVITE", "out SIP/2.0 100 Trying",
                                     "out SIP/2.0 486 Busy Here", "in ACK"]
    assert lines(view, "attempt-1") == ["out INVITE", "in SIP/2.0 503 Rejected", "out ACK"]
    assert lines(view, "attempt-2") == ["out INVITE", "in SIP/2.0 486 Busy Here", "out ACK"]
    times = [m["at"] for m in view["messages"]]
    assert times == sorted(times) and cdr["start_at"] - 1 < times[0] <= cdr["end_at"]
    busy = next(m for m in view["messages"] if m["first_line"].startswith("SIP/2.0 486")
                and m["leg"] == "attempt-2")
    assert (busy["from"], busy["to"], busy["transport"]) == ("attempt-2", "softswitch", "udp")
    assert busy["remote"] == f"{VENDOR2_IP}:{switch.ports['second']}"
    assert busy["local"] == switch.target and "Call-ID: " in busy["text"]
    # The same ladder by the call's number, as GET /calls lists it while up.
    assert switch.api.get(f"/api/v1/calls/{call['id']}/sip")["messages"] == view["messages"]
    stats = switch.api.get("/api/v1/stats")["counters"]["ladders"]
    assert stats["kept"] >= 1 and stats["bytes"] > 0
    assert SipLadderSchema().validate(view) == {}


def test_an_answered_call_while_up_then_not_kept_by_default(
        tmp_path: Path, switch: Switch) -> None:
    caller, vendor = answered_call(tmp_path, switch, "2001", hold_ms=3000)
    try:
        up = wait_until(lambda: [c for c in switch.api.get("/api/v1/calls")["items"]
                                 if c["callee"] == "2001" and c["answer_at"]], timeout=10)
        assert up, switch.softswitch.log()[-3000:]
        view = wait_until(lambda: (v := switch.api.get(
            f"/api/v1/calls/{up[0]['id']}/sip")) and "in ACK" in lines(v, "caller") and v)
        assert view["call"]["state"] == "up" and view["call"]["answer_at"]
        assert lines(view, "caller")[:2] == ["in INVITE", "out SIP/2.0 100 Trying"]
        assert "out SIP/2.0 200 OK" in lines(view, "caller")
        assert lines(view, "attempt-1")[:1] == ["out INVITE"]
        assert "in SIP/2.0 200 OK" in lines(view, "attempt-1")
        assert "out ACK" in lines(view, "attempt-1")
        assert view["participants"][2]["name"] == "answer"
        assert SipLadderSchema().validate(view) == {}
    finally:
        finish(caller, vendor)
    cdr = switch.cdr_of("2001")
    status, body, headers = switch.api.call("GET", f"/api/v1/cdrs/{cdr['id']}/sip")
    assert status == 404 and headers["Content-Type"] == "application/problem+json"
    assert "answered" in body["detail"] and "SS_SIP_LADDERS is Failed" in body["detail"]
    status, body, _ = switch.api.call("GET", f"/api/v1/calls/{up[0]['id']}/sip")
    assert status == 404 and "answered" in body["detail"]
    status, body, _ = switch.api.call("GET", "/api/v1/cdrs/999999/sip")
    assert status == 404 and body["detail"] == "no CDR with id 999999"


def test_all_keeps_answered_calls(tmp_path: Path, switch: Switch) -> None:
    switch.param("SS_SIP_LADDERS", "All")
    try:
        finish(*answered_call(tmp_path, switch, "2002", hold_ms=200))
        cdr = switch.cdr_of("2002")
        view = wait_until(lambda: (v := switch.api.get(f"/api/v1/cdrs/{cdr['id']}/sip"))
                          and "in SIP/2.0 200 OK" in lines(v, "attempt-1")[-1:] and v)
        assert view, switch.api.get(f"/api/v1/cdrs/{cdr['id']}/sip")
        assert lines(view, "caller")[-2:] == ["in BYE", "out SIP/2.0 200 OK"]
        assert lines(view, "attempt-1")[-2:] == ["out BYE", "in SIP/2.0 200 OK"]
        assert view["call"]["answer_at"] == pytest.approx(cdr["answer_at"], abs=0.01)
    finally:
        switch.param("SS_SIP_LADDERS", "Failed")


def test_sngrep_listening_for_hep_receives_every_message_of_a_call(
        tmp_path: Path, switch: Switch) -> None:
    port = free_port("127.0.0.1", socket.SOCK_DGRAM)
    caller_port = free_port(CUSTOMER_IP)
    pcap = tmp_path / "hep.pcap"
    # -N: no interface, -q: quiet; -L: the HEP listener, its only capture source;
    # -O: what it received, as frames rebuilt from each HEP packet's addresses.
    collector = subprocess.Popen(
        ["sngrep", "-N", "-q", "-L", f"udp:127.0.0.1:{port}", "-O", str(pcap)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "sngrep.err", "wb"))  # noqa: SIM115 - closed with it
    try:
        assert wait_until(lambda: _listening(port), timeout=5), "sngrep did not listen"
        switch.param("SS_HEP_DESTINATION", f"127.0.0.1:{port}")
        switch.param("SS_HEP_CAPTURE_ID", 2042)
        finish(*answered_call(tmp_path, switch, "2003", hold_ms=200, caller_port=caller_port))
        switch.cdr_of("2003")
        time.sleep(0.5)  # the last messages (the BYE's 200) on their way
    finally:
        switch.param("SS_HEP_DESTINATION", "")
        collector.send_signal(signal.SIGTERM)
        collector.wait(10)
    sip = f"127.0.0.1:{switch.softswitch.sip_port}"
    vendor = f"{ANSWER_IP}:{switch.ports['answer']}"
    customer = f"{CUSTOMER_IP}:{caller_port}"
    seen = _decoded(pcap, switch.softswitch.sip_port)
    expected = [
        (customer, sip, "INVITE"), (sip, customer, "100"), (sip, vendor, "INVITE"),
        (vendor, sip, "180"), (sip, customer, "180"), (vendor, sip, "200"),
        (sip, vendor, "ACK"), (sip, customer, "200"), (customer, sip, "ACK"),
        (customer, sip, "BYE"), (sip, customer, "200"), (sip, vendor, "BYE"),
        (vendor, sip, "200"),
    ]
    missing = [m for m in expected if m not in seen]
    assert not missing, (missing, seen)
    stats = switch.api.get("/api/v1/stats")["counters"]["hep"]
    assert stats["sent"] >= len(expected) and stats["errors"] == 0


def _listening(port: int) -> bool:
    with open("/proc/net/udp") as table:
        return f":{port:04X} " in table.read()


def _decoded(pcap: Path, sip_port: int) -> list[tuple[str, str, str]]:
    """What sngrep wrote, decoded by tshark: (source, destination, method or status)."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"udp.port=={sip_port},sip", "-Y", "sip",
         "-T", "fields", "-E", "separator=|", "-e", "ip.src", "-e", "udp.srcport",
         "-e", "ip.dst", "-e", "udp.dstport", "-e", "sip.Method", "-e", "sip.Status-Code"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    seen = []
    for line in out.splitlines():
        src, sport, dst, dport, method, status = line.split("|")
        seen.append((f"{src}:{sport}", f"{dst}:{dport}", method or status))
    return seen
