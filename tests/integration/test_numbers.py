"""Numbers end to end: dial plans on both sides, the transform table, P-Asserted-Identity,
black/white lists and the technical-prefix recipe, against a real softswitch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sipcaller import RecordingVendor, place_call
from sippctl import CUSTOMER_IP
from support import Softswitch, free_port, wait_until

pytestmark = pytest.mark.both_backends

VENDOR_IPS = ("127.0.0.3", "127.0.0.4")


@contextmanager
def vendors(count: int) -> Iterator[list[tuple[RecordingVendor, int]]]:
    running = []
    for ip in VENDOR_IPS[:count]:
        port = free_port(ip)
        running.append((RecordingVendor(ip, port), port))
    try:
        yield running
    finally:
        for vendor, _ in running:
            vendor.close()


def configure(switch: Softswitch, mapping: dict[str, Any],
              routing: list[dict[str, Any]]) -> None:
    api = switch.api
    api.post("/api/v1/mapping-gateways", {"name": "custA", "ips": [CUSTOMER_IP], **mapping})
    for gw in routing:
        api.post("/api/v1/routing-gateways", gw)
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == len(routing),
                      timeout=2)


def last_cdr(switch: Softswitch) -> dict[str, Any]:
    items = wait_until(lambda: switch.api.get("/api/v1/cdrs")["items"], timeout=5)
    cdr: dict[str, Any] = items[-1]
    return cdr


def call(switch: Softswitch, callee: str, caller_user: str = "1001") -> int | None:
    return place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), callee,
                      caller=caller_user).final


def test_numbers_rewritten_on_both_sides_with_transform_and_pai(softswitch: Softswitch
                                                                ) -> None:
    api = softswitch.api
    api.post("/api/v1/number-transforms",
             {"number": "862150001234", "replacement": "862150009999", "memo": "main DID"})
    with vendors(1) as [(vendor, port)]:
        configure(softswitch,
                  {"caller_dial_plan": "0:86*", "callee_dial_plan": "00:",
                   "caller_transform": True},
                  [{"name": "vendorCN", "host": VENDOR_IPS[0], "port": port,
                    "prefixes": ["86"], "callee_dial_plan": "*:+*",
                    "caller_dial_plan": "*{E12}:+*", "pai_dial_plan": "+:"}])
        assert call(softswitch, "008613800138000", "02150001234") == 486
    assert vendor.request_uri() == f"sip:+8613800138000@{VENDOR_IPS[0]}:{port}"
    assert vendor.header("To").startswith("<sip:+8613800138000@")
    assert vendor.header("From").split(">")[0].endswith("sip:+862150009999@127.0.0.1")
    assert vendor.header("P-Asserted-Identity") == "<sip:862150009999@127.0.0.1>"
    cdr = last_cdr(softswitch)
    assert (cdr["caller"], cdr["callee"]) == ("02150001234", "008613800138000")
    assert (cdr["caller_routed"], cdr["callee_routed"]) == ("862150009999", "8613800138000")
    assert (cdr["caller_sent"], cdr["callee_sent"]) == ("+862150009999", "+8613800138000")


def test_no_pai_when_the_plan_is_empty(softswitch: Softswitch) -> None:
    with vendors(1) as [(vendor, port)]:
        configure(softswitch, {}, [{"name": "v", "host": VENDOR_IPS[0], "port": port}])
        assert call(softswitch, "4420001") == 486
    assert vendor.header("P-Asserted-Identity") == ""
    assert vendor.request_uri().startswith("sip:4420001@")


def _cdrs(switch: Softswitch, count: int) -> list[dict[str, Any]]:
    """The CDRs once ``count`` are written: the writer commits them after the calls end."""
    items: list[dict[str, Any]] = wait_until(
        lambda: (found := switch.api.get("/api/v1/cdrs")["items"]) and len(found) >= count
        and found, timeout=5)
    return items


def test_denied_caller_group_bulk_imported(softswitch: Softswitch) -> None:
    api = softswitch.api
    group = api.post("/api/v1/number-groups", {"name": "fraud", "memo": "known abusers"})
    numbers = [f"1555{n:07d}" for n in range(5000)] + ["1001"]
    added = api.post(f"/api/v1/number-groups/{group['id']}/numbers", {"numbers": numbers})
    assert added == {"changed": 5001, "total": 5001}
    again = api.post(f"/api/v1/number-groups/{group['id']}/numbers", {"numbers": ["1001"]})
    assert again == {"changed": 0, "total": 5001}
    with vendors(1) as [(vendor, port)]:
        configure(softswitch, {"caller_groups": ["fraud"], "caller_groups_mode": "deny"},
                  [{"name": "v", "host": VENDOR_IPS[0], "port": port}])
        assert call(softswitch, "4420001", "1001") == 403
        assert call(softswitch, "4420001", "1002") == 486
    assert len(vendor.invites) == 1  # only the allowed caller's call reached the vendor
    cdrs = _cdrs(softswitch, 2)
    assert cdrs[0]["final_code"] == 403
    assert cdrs[0]["termination_reason"] == 'caller in deny group "fraud"'
    assert api.get("/api/v1/stats")["counters"]["refused_by_lists"] == 1


def test_callee_outside_a_whitelist_and_denied_prefix(softswitch: Softswitch) -> None:
    api = softswitch.api
    group = api.post("/api/v1/number-groups", {"name": "vip"})
    api.post(f"/api/v1/number-groups/{group['id']}/numbers",
             {"numbers": ["4420001", "44209555"]})
    with vendors(1) as [(vendor, port)]:
        configure(softswitch, {"callee_groups": ["vip"], "callee_groups_mode": "allow",
                               "callee_prefixes_deny": ["44209"]},
                  [{"name": "v", "host": VENDOR_IPS[0], "port": port}])
        assert call(softswitch, "4420001") == 486
        assert call(softswitch, "4420002") == 403
        assert call(softswitch, "44209555") == 403
    assert len(vendor.invites) == 1
    reasons = [c["termination_reason"] for c in _cdrs(softswitch, 3)]
    assert reasons[1] == 'callee not in allow group "vip"'
    assert reasons[2] == 'callee prefix "44209" denied'


def test_routing_gateway_lists_skip_that_vendor(softswitch: Softswitch) -> None:
    api = softswitch.api
    api.post("/api/v1/number-groups", {"name": "blocked-cli"})
    gid = api.get("/api/v1/number-groups")["items"][0]["id"]
    api.post(f"/api/v1/number-groups/{gid}/numbers", {"numbers": ["1001"]})
    with vendors(2) as [(v1, p1), (v2, p2)]:
        configure(softswitch, {}, [
            {"name": "picky", "host": VENDOR_IPS[0], "port": p1, "priority": 1,
             "caller_groups": ["blocked-cli"], "caller_groups_mode": "deny"},
            {"name": "other", "host": VENDOR_IPS[1], "port": p2, "priority": 2}])
        assert call(softswitch, "4420001", "1001") == 486
    assert (len(v1.invites), len(v2.invites)) == (0, 1)


def test_technical_prefix_forces_a_customer_onto_one_vendor(softswitch: Softswitch) -> None:
    with vendors(2) as [(general, p1), (forced, p2)]:
        configure(softswitch, {"callee_dial_plan": "*:9001*"}, [
            {"name": "general", "host": VENDOR_IPS[0], "port": p1, "prefixes": ["44"]},
            {"name": "forced", "host": VENDOR_IPS[1], "port": p2, "prefixes": ["9001"],
             "callee_dial_plan": "9001:"}])
        assert call(softswitch, "4420001") == 486
    assert general.invites == []
    assert forced.request_uri() == f"sip:4420001@{VENDOR_IPS[1]}:{p2}"
    cdr = last_cdr(softswitch)
    assert (cdr["callee_routed"], cdr["callee_sent"], cdr["routing_gateway"]) == (
        "90014420001", "4420001", "forced")


def test_invalid_dial_plan_refused_with_its_position(softswitch: Softswitch) -> None:
    status, body, _ = softswitch.api.call(
        "POST", "/api/v1/mapping-gateways",
        {"name": "bad", "ips": [CUSTOMER_IP], "callee_dial_plan": "00:,0*1:"})
    assert status == 422
    (message,) = body["errors"]["callee_dial_plan"]
    assert "position" in message
