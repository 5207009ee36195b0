"""Who gets a call in and what they hear: sources, OPTIONS, routes, capacity."""

from __future__ import annotations

from typing import Any

from rawsip import probe
from sippctl import CUSTOMER_IP, VENDOR2_IP, VENDOR_IP
from support import Softswitch, wait_until

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n" \
      "m=audio 40000 RTP/AVP 0\r\n"


def setup(switch: Softswitch, mapping: dict[str, Any] | None = None,
          routing: list[dict[str, Any]] | None = None) -> None:
    api = switch.api
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP],
                                          **(mapping or {})})
    for i, gw in enumerate(routing or []):
        api.post("/api/v1/routing-gateways", {"name": f"vendor{i}", "host": VENDOR_IP, **gw})
    assert wait_until(
        lambda: api.get("/api/v1/engine")["routing_gateways"] == len(routing or []), timeout=2)


def test_options_answered_for_known_sources_only(softswitch: Softswitch) -> None:
    setup(softswitch, routing=[{"port": 5999}])
    assert probe("OPTIONS", softswitch.sip_port, CUSTOMER_IP) == [200]
    assert probe("OPTIONS", softswitch.sip_port, VENDOR_IP) == [200]
    assert probe("OPTIONS", softswitch.sip_port, VENDOR2_IP) == [401]  # as any stranger
    softswitch.api.put("/api/v1/parameters/SS_REPLY_UNAUTHORIZED", {"value": "Off"})
    assert wait_until(lambda: probe("OPTIONS", softswitch.sip_port, VENDOR2_IP, 0.3) == [],
                      timeout=2)
    assert probe("OPTIONS", softswitch.sip_port, CUSTOMER_IP) == [200]
    assert probe("INVITE", softswitch.sip_port, VENDOR2_IP, body=SDP) == []


def test_invite_without_route_gets_404_and_a_cdr(softswitch: Softswitch) -> None:
    setup(softswitch, routing=[{"port": 5999, "prefixes": ["44"]}])
    assert probe("INVITE", softswitch.sip_port, CUSTOMER_IP, user="3312345", body=SDP) == [
        100, 404]
    cdrs = wait_until(lambda: softswitch.api.get("/api/v1/cdrs")["items"], timeout=3)
    assert cdrs[0]["final_code"] == 404
    assert cdrs[0]["termination_reason"] == "no routing gateway matches the callee"
    assert cdrs[0]["routing_gateway"] is None


def test_full_or_disabled_vendor_gives_503(softswitch: Softswitch) -> None:
    setup(softswitch, routing=[{"port": 5999, "capacity": 0},
                               {"port": 5998, "enabled": False, "host": VENDOR2_IP}])
    assert probe("INVITE", softswitch.sip_port, CUSTOMER_IP, body=SDP) == [100, 503]


def test_customer_at_capacity_gets_503(softswitch: Softswitch) -> None:
    setup(softswitch, mapping={"capacity": 0}, routing=[{"port": 5999}])
    assert probe("INVITE", softswitch.sip_port, CUSTOMER_IP, body=SDP) == [503]
    stats = softswitch.api.get("/api/v1/stats")
    assert stats["counters"]["rejected_capacity"] == 1


def test_disabled_customer_is_an_unknown_source(softswitch: Softswitch) -> None:
    setup(softswitch, mapping={"enabled": False}, routing=[{"port": 5999}])
    assert probe("INVITE", softswitch.sip_port, CUSTOMER_IP, body=SDP) == [401]


def test_max_forwards_zero_is_483_and_stray_bye_is_481(softswitch: Softswitch) -> None:
    setup(softswitch, routing=[{"port": 5999}])
    assert probe("INVITE", softswitch.sip_port, CUSTOMER_IP, body=SDP, max_forwards=0) == [483]
    assert probe("BYE", softswitch.sip_port, CUSTOMER_IP, to_tag="abc") == [481]
    assert probe("REGISTER", softswitch.sip_port, CUSTOMER_IP) == [405]
