"""Registering mapping gateways with sipp against a running softswitch: a password-mode
PBX trunk behind NAT with SS_REPLY_UNAUTHORIZED Off registers, then calls with the
caller's number in From from its registered address; anything else of it hears nothing.
Distinct loopback addresses stand for distinct hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from capture import Capture
from sippctl import VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until
from test_edge_security import NATTED_IP, PASSWORD_GW, PBX_CALLER, call, security, vendor_and
from test_registrar import register

pytestmark = pytest.mark.both_backends


def registered_call(tmp_path: Path, switch: Softswitch, vendor_port: int | None, port: int,
                    *, expires: int = 300, timeout_s: int = 15) -> tuple[int, int | None]:
    """The trunk's REGISTER and then its call, from NATTED_IP:``port``, in one scenario."""
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port) if vendor_port else None
    trunk = sipp("uac_pbx_trunk_registered.xml", tmp_path, NATTED_IP, port,
                 f"127.0.0.1:{switch.sip_port}", timeout_s=timeout_s,
                 extra=["-au", "gw1", "-ap", "s3cret", "-key", "trunk", "gw1",
                        "-key", "caller", PBX_CALLER, "-key", "expires", str(expires)])
    try:
        code = trunk.wait()
        vcode = vendor.wait() if vendor and code == 0 else None
    finally:
        trunk.stop()
        if vendor:
            vendor.stop()
    return code, vcode


def registrations(switch: Softswitch, **query: str) -> list[dict[str, Any]]:
    args = "&".join(f"{k}={v}" for k, v in query.items())
    items: list[dict[str, Any]] = switch.api.get(
        "/api/v1/registrations" + (f"?{args}" if args else ""))["items"]
    return items


def gateway_status(switch: Softswitch, name: str) -> dict[str, Any]:
    (status,) = [s for s in switch.api.get("/api/v1/mapping-gateways/status")["items"]
                 if s["name"] == name]
    return status


def test_registered_pbx_trunk_calls_with_reply_unauthorized_off(tmp_path: Path,
                                                                 softswitch: Softswitch) -> None:
    vendor_port = vendor_and(softswitch, PASSWORD_GW, SS_REPLY_UNAUTHORIZED="Off")
    port = free_port(NATTED_IP)
    assert registered_call(tmp_path, softswitch, vendor_port, port) == (0, 0)
    (cdr,) = wait_until(lambda: softswitch.api.get("/api/v1/cdrs")["items"])
    assert (cdr["mapping_gateway"], cdr["caller"], cdr["final_code"], cdr["phone"]) == (
        "natted", PBX_CALLER, 200, None)
    stats = security(softswitch)
    # The REGISTER and the INVITE, each challenged and answered, both as the gateway.
    assert stats["challenged"] == {"gateway": 2}
    assert stats["authenticated"] == {"gateway": 2}
    (reg,) = registrations(softswitch)
    assert (reg["username"], reg["kind"], reg["mapping_gateway"], reg["source"]) == (
        "gw1", "mapping_gateway", "natted", f"{NATTED_IP}:{port}")
    assert registrations(softswitch, kind="phone") == []
    status = gateway_status(softswitch, "natted")
    assert status["auth_mode"] == "password" and status["current_calls"] == 0
    assert [r["source"] for r in status["registrations"]] == [f"{NATTED_IP}:{port}"]


def test_the_registered_trunk_from_another_port_hears_nothing_when_off(
    tmp_path: Path, softswitch: Softswitch
) -> None:
    vendor_and(softswitch, PASSWORD_GW, SS_REPLY_UNAUTHORIZED="Off")
    registered_port = free_port(NATTED_IP)
    assert register(tmp_path, softswitch, "gw1", src_ip=NATTED_IP, port=registered_port,
                    password="s3cret") == 0
    assert registrations(softswitch)[0]["kind"] == "mapping_gateway"
    other_port = free_port(NATTED_IP)
    assert other_port != registered_port
    with Capture(tmp_path / "other-port.pcap", f"host {NATTED_IP} and port {other_port}") \
            as cap:
        code, _ = call(tmp_path, softswitch, None, "uac_pbx_trunk.xml", NATTED_IP,
                       src_port=other_port, caller=PBX_CALLER, timeout_s=3)
    assert code != 0  # sipp gave up waiting
    assert cap.packets(f"ip.src==127.0.0.1 && ip.dst=={NATTED_IP} && (udp || icmp)") == []
    assert security(softswitch)["dropped"]["unknown_source"] >= 1


def test_unregistered_by_the_api_and_by_disabling_the_gateway(tmp_path: Path,
                                                               softswitch: Softswitch) -> None:
    vendor_and(softswitch, PASSWORD_GW, SS_REPLY_UNAUTHORIZED="Off")
    api = softswitch.api
    port = free_port(NATTED_IP)
    assert register(tmp_path, softswitch, "gw1", src_ip=NATTED_IP, port=port,
                    password="s3cret") == 0
    assert api.call("DELETE", "/api/v1/registrations/gw1")[1] == {"removed": 1}
    assert registrations(softswitch) == []
    assert gateway_status(softswitch, "natted")["registrations"] == []
    # Registered again, then the gateway is disabled: the reload removes it.
    assert register(tmp_path, softswitch, "gw1", src_ip=NATTED_IP, port=port,
                    password="s3cret") == 0
    (gw,) = api.get("/api/v1/mapping-gateways")["items"]
    url = f"/api/v1/mapping-gateways/{gw['id']}"
    status, _, _ = api.call("PATCH", url, {"enabled": False})
    assert status == 200
    assert wait_until(lambda: registrations(softswitch) == [], timeout=3)
