"""The basic B2BUA call with real sipp peers: customer trunk -> softswitch -> vendor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

pytestmark = pytest.mark.both_backends


def configure(switch: Softswitch, vendor_port: int, *, transport: str = "udp",
              mapping: dict[str, Any] | None = None, routing: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    api = switch.api
    mgw = api.post("/api/v1/mapping-gateways",
                   {"name": "customer", "ips": [CUSTOMER_IP], **(mapping or {})})
    rgw = api.post("/api/v1/routing-gateways",
                   {"name": "vendor", "host": VENDOR_IP, "port": vendor_port,
                    "transport": transport, **(routing or {})})
    assert wait_until(lambda: _engine_has_gateways(switch, 1, 1), timeout=2)
    return mgw, rgw


def _engine_has_gateways(switch: Softswitch, mapping: int, routing: int) -> bool:
    status = switch.api.get("/api/v1/engine")
    return bool(status["mapping_gateways"] == mapping and status["routing_gateways"] == routing)


def cdrs(switch: Softswitch, expected: int) -> list[dict[str, Any]]:
    def fetch() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = switch.api.get("/api/v1/cdrs?limit=500")["items"]
        return items

    wait_until(lambda: len(fetch()) >= expected, timeout=10)
    return fetch()


def run_pair(tmp_path: Path, switch: Softswitch, uac: str, uas: str, *, uac_hold: int = 0,
             uas_hold: int = 0, calls: int = 1, rate: float = 10, uac_transport: str = "u1",
             uas_transport: str = "u1", vendor_port: int | None = None) -> None:
    port = vendor_port or free_port(VENDOR_IP)
    vendor = sipp(uas, tmp_path, VENDOR_IP, port, calls=calls, hold_ms=uas_hold,
                  transport=uas_transport)
    customer = sipp(uac, tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                    f"127.0.0.1:{switch.sip_port}", calls=calls, rate=rate, hold_ms=uac_hold,
                    transport=uac_transport)
    try:
        assert customer.wait() == 0, customer.output() + switch.log()[-3000:]
        assert vendor.wait() == 0, vendor.output() + switch.log()[-3000:]
    finally:
        customer.stop()
        vendor.stop()


@pytest.fixture
def vendor_port() -> int:
    return free_port(VENDOR_IP)


def test_call_answered_and_hung_up_by_caller(
    tmp_path: Path, softswitch: Softswitch, vendor_port: int
) -> None:
    mgw, rgw = configure(softswitch, vendor_port)
    started = time.time()
    run_pair(tmp_path, softswitch, "uac_call.xml", "uas_answer.xml", uac_hold=500,
             vendor_port=vendor_port)
    (cdr,) = cdrs(softswitch, 1)
    assert cdr["final_code"] == 200
    assert cdr["hangup_by"] == "caller" and cdr["termination_reason"] == "caller BYE"
    assert (cdr["caller"], cdr["callee"]) == ("1001", "200")
    assert cdr["mapping_gateway_id"] == mgw["id"] and cdr["routing_gateway_id"] == rgw["id"]
    assert cdr["call_id_out"] and cdr["call_id_out"] != cdr["call_id_in"]
    assert started <= cdr["start_at"] <= cdr["ringing_at"] <= cdr["answer_at"] <= cdr["end_at"]
    assert 0.4 <= cdr["duration"] <= 5
    assert cdr["source"].startswith(CUSTOMER_IP)


def test_call_hung_up_by_callee(tmp_path: Path, softswitch: Softswitch, vendor_port: int
                                ) -> None:
    configure(softswitch, vendor_port)
    run_pair(tmp_path, softswitch, "uac_wait_bye.xml", "uas_hangup.xml", uas_hold=500,
             vendor_port=vendor_port)
    (cdr,) = cdrs(softswitch, 1)
    assert (cdr["final_code"], cdr["hangup_by"]) == (200, "callee")
    assert cdr["ringing_at"] is None and cdr["answer_at"] is not None


def test_cancel_while_ringing(tmp_path: Path, softswitch: Softswitch, vendor_port: int) -> None:
    configure(softswitch, vendor_port)
    run_pair(tmp_path, softswitch, "uac_cancel.xml", "uas_ring_cancelled.xml",
             vendor_port=vendor_port)
    (cdr,) = cdrs(softswitch, 1)
    assert (cdr["final_code"], cdr["hangup_by"]) == (487, "caller")
    assert cdr["termination_reason"] == "caller CANCEL"
    assert cdr["answer_at"] is None and cdr["duration"] == 0


def test_vendor_busy_reaches_caller(tmp_path: Path, softswitch: Softswitch, vendor_port: int
                                    ) -> None:
    configure(softswitch, vendor_port)
    run_pair(tmp_path, softswitch, "uac_busy.xml", "uas_busy.xml", vendor_port=vendor_port)
    (cdr,) = cdrs(softswitch, 1)
    assert (cdr["final_code"], cdr["hangup_by"]) == (486, "callee")
    assert cdr["termination_reason"].startswith("vendor 486")


def test_reinvite_hold_passes_through(tmp_path: Path, softswitch: Softswitch, vendor_port: int
                                      ) -> None:
    configure(softswitch, vendor_port)
    run_pair(tmp_path, softswitch, "uac_reinvite.xml", "uas_reinvite.xml",
             vendor_port=vendor_port)
    (cdr,) = cdrs(softswitch, 1)
    assert (cdr["final_code"], cdr["hangup_by"]) == (200, "caller")


@pytest.mark.parametrize(("uac_t", "uas_t", "gw_t"), [("t1", "u1", "udp"), ("u1", "t1", "tcp")])
def test_tcp_on_one_leg_udp_on_the_other(
    tmp_path: Path, softswitch: Softswitch, vendor_port: int, uac_t: str, uas_t: str, gw_t: str
) -> None:
    configure(softswitch, vendor_port, transport=gw_t)
    run_pair(tmp_path, softswitch, "uac_call.xml", "uas_answer.xml", uac_hold=300,
             uac_transport=uac_t, uas_transport=uas_t, vendor_port=vendor_port)
    (cdr,) = cdrs(softswitch, 1)
    assert cdr["final_code"] == 200 and cdr["hangup_by"] == "caller"


def test_hundred_concurrent_calls(tmp_path: Path, softswitch: Softswitch, vendor_port: int
                                  ) -> None:
    configure(softswitch, vendor_port)
    run_pair(tmp_path, softswitch, "uac_call.xml", "uas_answer.xml", uac_hold=3000, calls=100,
             rate=100, vendor_port=vendor_port)
    rows = cdrs(softswitch, 100)
    assert len(rows) == 100
    assert all(r["final_code"] == 200 and r["hangup_by"] == "caller" for r in rows)
    assert softswitch.api.get("/api/v1/calls")["items"] == []


def test_active_call_is_listed_while_up(tmp_path: Path, softswitch: Softswitch,
                                        vendor_port: int) -> None:
    configure(softswitch, vendor_port)
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port)
    customer = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                    f"127.0.0.1:{softswitch.sip_port}", hold_ms=2000)
    try:
        live = wait_until(lambda: [c for c in softswitch.api.get("/api/v1/calls")["items"]
                                   if c["state"] == "confirmed"], timeout=5)
        assert live, softswitch.api.get("/api/v1/calls")
        assert (live[0]["caller"], live[0]["callee"]) == ("1001", "200")
        assert live[0]["mapping_gateway"] == "customer"
        assert live[0]["routing_gateway"] == "vendor"
        assert customer.wait() == 0 and vendor.wait() == 0
    finally:
        customer.stop()
        vendor.stop()
    assert wait_until(lambda: softswitch.api.get("/api/v1/calls")["items"] == [], timeout=3)
