"""kill -9 with calls up: after the restart each of them has a CDR marked interrupted,
and the CDRs of calls that had already ended are all there."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

pytestmark = pytest.mark.both_backends

UP = 20


def test_calls_up_at_kill_9_get_interrupted_cdrs(tmp_path: Path, backend_db: str | None
                                                 ) -> None:
    switch = Softswitch(tmp_path, db=backend_db).start()
    api = switch.api
    vendor_port = free_port(VENDOR_IP)
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                          "port": vendor_port})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)
    # Five short calls that end normally, then twenty long ones still up at the kill.
    short_v = sipp("uas_answer.xml", tmp_path / "short", VENDOR_IP, vendor_port, calls=5)
    short_c = sipp("uac_call.xml", tmp_path / "short", CUSTOMER_IP, free_port(CUSTOMER_IP),
                   f"127.0.0.1:{switch.sip_port}", calls=5, rate=10, hold_ms=100)
    assert short_c.wait(30) == 0 and short_v.wait(30) == 0
    long_v = sipp("uas_answer.xml", tmp_path / "long", VENDOR_IP, vendor_port, calls=UP)
    long_c = sipp("uac_call.xml", tmp_path / "long", CUSTOMER_IP, free_port(CUSTOMER_IP),
                  f"127.0.0.1:{switch.sip_port}", calls=UP, rate=20, hold_ms=60_000)
    try:
        assert wait_until(lambda: len([c for c in api.get("/api/v1/calls")["items"]
                                       if c["state"] == "confirmed"]) == UP, timeout=15)
        switch.stop(signal.SIGKILL)
    finally:
        long_c.stop()
        long_v.stop()
    restarted = Softswitch(tmp_path, db=backend_db).start()
    try:
        cdrs = restarted.api.get("/api/v1/cdrs?limit=100")["items"]
        normal = [c for c in cdrs if c["termination_reason"] == "caller BYE"]
        interrupted = [c for c in cdrs if c["termination_reason"].startswith("interrupted")]
        assert len(normal) == 5
        assert len(interrupted) == UP
        assert all(c["final_code"] == 200 and c["answer_at"] and c["duration"] > 0
                   and c["hangup_by"] == "system" for c in interrupted)
        assert len({c["call_id_in"] for c in cdrs}) == len(cdrs) == 5 + UP
    finally:
        assert restarted.stop() == 0


def test_a_vendor_that_vanished_mid_call_leaks_nothing(softswitch: Softswitch) -> None:
    """The vendor disappears (its BYE is never answered): the call still ends at once."""
    from rtppeer import AnsweringVendor, RtpEndpoint
    from sipcaller import place_call

    api = softswitch.api
    vendor_port = free_port(VENDOR_IP)
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                          "port": vendor_port, "capacity": 1})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)
    media = RtpEndpoint(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, media)

    def vanish(_answer: str) -> None:
        vendor.close()

    try:
        result = place_call(CUSTOMER_IP, ("127.0.0.1", softswitch.sip_port), "4420001",
                            on_answer=vanish, hold=0.3)
    finally:
        media.close()
    assert result.final == 200
    assert wait_until(lambda: api.get("/api/v1/calls")["items"] == [], timeout=3)
    (status,) = api.get("/api/v1/routing-gateways/status")["items"]
    assert status["current_calls"] == 0  # the capacity of 1 is free again
    (cdr,) = api.get("/api/v1/cdrs")["items"]
    assert cdr["termination_reason"] == "caller BYE"
