"""Calls leave no reference cycles: every object of a finished call is freed by reference
counting. The engine relies on it to run without the interpreter's automatic full
garbage collections (b2bua/collector.py), whose pauses would otherwise stall signalling
at high call rates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

from b2bua import control

PHONE_IP = "127.0.0.7"
AUTH_IP = "127.0.0.5"
CALLS = 60
# A full collection right after start-up frees what loading the configuration left; a
# leak per call would free at least one cycle (several objects) per call.
SLACK = 40


def _collect(switch: Softswitch) -> dict[str, Any]:
    reply: dict[str, Any] = control.request(switch.db_path.parent / "engine.sock", "collect",
                                            timeout=10)
    return reply


def _run(tmp_path: Path, switch: Softswitch, scenario: str, src_ip: str, vendor: str | None,
         vendor_port: int, *, calls: int = CALLS, extra: list[str] | None = None) -> None:
    uas = sipp(vendor, tmp_path, VENDOR_IP, vendor_port, calls=calls) if vendor else None
    uac = sipp(scenario, tmp_path, src_ip, free_port(src_ip), f"127.0.0.1:{switch.sip_port}",
               calls=calls, rate=50, hold_ms=100, extra=extra)
    try:
        assert uac.wait() == 0, uac.output() + switch.log()[-3000:]
        if uas is not None:
            assert uas.wait() == 0, uas.output()
    finally:
        uac.stop()
        if uas is not None:
            uas.stop()


def test_finished_calls_leave_no_cycles(tmp_path: Path, softswitch: Softswitch) -> None:
    api = softswitch.api
    vendor_port = free_port(VENDOR_IP)
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                          "port": vendor_port})
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    api.post("/api/v1/mapping-gateways", {"name": "pw", "auth_mode": "password",
                                          "username": "gw1", "password": "s3cret"})
    api.post("/api/v1/phones", {"username": "3001", "password": "pw-3001"})
    api.put("/api/v1/parameters/SS_MEDIAPROXYMODE", {"value": "On"})
    assert wait_until(lambda: api.get("/api/v1/engine")["mapping_gateways"] == 2, timeout=2)
    before = _collect(softswitch)  # what start-up and loading the configuration left

    # Answered calls through the relay, digest-authenticated calls, rejected calls,
    # registrations, and calls refused before routing.
    _run(tmp_path, softswitch, "uac_call.xml", CUSTOMER_IP, "uas_answer.xml", vendor_port)
    _run(tmp_path, softswitch, "uac_auth.xml", AUTH_IP, "uas_answer.xml", vendor_port,
         extra=["-au", "gw1", "-ap", "s3cret", "-key", "caller", "gw1"])
    _run(tmp_path, softswitch, "uac_busy.xml", CUSTOMER_IP, "uas_busy.xml", vendor_port)
    _run(tmp_path, softswitch, "phone_register.xml", PHONE_IP, None, vendor_port, calls=20,
         extra=["-au", "3001", "-ap", "pw-3001", "-key", "caller", "3001",
                "-key", "expires", "300"])
    assert wait_until(lambda: len(api.get("/api/v1/cdrs?limit=500")["items"]) >= 3 * CALLS,
                      timeout=10)
    # Transactions are kept 32 s after they end (Timer J, RFC 3261); freeing them is
    # reference counting too, so no need to wait for them: cycles would show already.
    garbage = _collect(softswitch)
    freed = garbage["collected_since_start"] - before["collected_since_start"]
    assert freed <= SLACK, str(garbage)
    # The census a soak takes (bench/soak.py --census-at) answers over the same channel.
    census = control.request(softswitch.db_path.parent / "engine.sock", "census", timeout=10)
    assert census["tracked"] > 1000
    assert any(name.startswith("b2bua.") for name in census["types"]), census["types"]


def test_nothing_of_a_call_outlives_its_transactions(tmp_path: Path, softswitch: Softswitch
                                                     ) -> None:
    """Once a call has ended none of its objects is left: no session-refresh timer, due in
    up to 2 hours, and no ACK-deadline timer, due 64*T1 (32 s) after the answer, holds it;
    the transactions that linger 32 s do not reference it. At 1000 calls/s a call held
    32 s would keep some 30,000 ended calls in memory."""
    api = softswitch.api
    vendor_port = free_port(VENDOR_IP)
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                          "port": vendor_port})
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    api.put("/api/v1/parameters/SS_MEDIAPROXYMODE", {"value": "On"})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)
    _run(tmp_path, softswitch, "uac_call.xml", CUSTOMER_IP, "uas_answer.xml", vendor_port,
         calls=20)
    # Well inside the 32 s of Timers J and L (the CDRs are written by then).
    assert wait_until(lambda: not _collect(softswitch)["live_call_objects"], timeout=5,
                      interval=0.5), _collect(softswitch)["live_call_objects"]
