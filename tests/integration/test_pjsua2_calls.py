"""pjsua2 user agents (an independent SIP stack) calling through the softswitch."""

from __future__ import annotations

from pathlib import Path

import pytest
from pjpeer import PeerProcess
from sippctl import CUSTOMER_IP, VENDOR_IP
from support import Softswitch, free_port, wait_until


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_pjsua2_caller_reaches_pjsua2_callee(
    tmp_path: Path, softswitch: Softswitch, transport: str
) -> None:
    vendor_port = free_port(VENDOR_IP)
    api = softswitch.api
    api.post("/api/v1/mapping-gateways", {"name": "pj-customer", "ips": [CUSTOMER_IP]})
    api.post("/api/v1/routing-gateways", {"name": "pj-vendor", "host": VENDOR_IP,
                                          "port": vendor_port, "transport": transport})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)
    peers: list[PeerProcess] = []
    try:
        callee = PeerProcess(
            ["answer", "--local", f"{VENDOR_IP}:{vendor_port}", "--transport", transport,
             "--ring", "0.3", "--timeout", "25"],
            tmp_path / "callee.err",
        )
        peers.append(callee)
        callee.wait_event("ready", timeout=10)
        caller = PeerProcess(
            ["call", "--local", f"{CUSTOMER_IP}:{free_port(CUSTOMER_IP)}",
             "--transport", transport,
             "--target", f"sip:4455@127.0.0.1:{softswitch.sip_port}",
             "--hold", "3", "--timeout", "25"],
            tmp_path / "caller.err",
        )
        peers.append(caller)
        caller.wait_event("state", timeout=10)
        live = wait_until(lambda: api.get("/api/v1/calls")["items"], timeout=10)
        assert live and live[0]["callee"] == "4455"
        assert caller.wait_exit(timeout=30) == 0, caller.describe() + softswitch.log()[-3000:]
        assert callee.wait_exit(timeout=30) == 0, callee.describe()
    finally:
        for peer in peers:
            peer.close()
    for peer in peers:
        states = peer.states()
        assert "CONFIRMED" in states and states[-1] == "DISCONNECTED", peer.describe()
    incoming = [e for e in callee.events if e["event"] == "incoming"]
    assert incoming and incoming[0]["ruri"].startswith(f"sip:4455@{VENDOR_IP}:{vendor_port}")
    items = wait_until(lambda: api.get("/api/v1/cdrs")["items"], timeout=5)
    assert [(c["final_code"], c["hangup_by"], c["callee"]) for c in items] == [
        (200, "caller", "4455")
    ]
