"""Sippy B2BUA 2.5 on either side of the softswitch: as a vendor (our calls go to it and
it sends them on to a sipp UAS) and as a customer trunk (a sipp caller's calls reach us
through it). Answered calls, hung up from either side."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from sippyb2b import SippyB2bua
from support import Softswitch, free_port, wait_until

SIPPY_IP = "127.0.0.27"
SCENARIOS = Path(__file__).parents[1] / "sipp"
ROUTED = Path(__file__).parent / "sipp"


def lowercase_transport(tmp_path: Path, name: str) -> str:
    """The scenario made fit for Sippy 2.5 as a direct peer of sipp, two faults between
    those two kept out of the softswitch's way: Sippy compares a URI's transport
    case-sensitively and fails on sipp's ``transport=UDP`` (RFC 3261 19.1.4 makes it
    case-insensitive), and sipp's ``[next_url]`` keeps the display name of Sippy's
    ``Contact: Anonymous <sip:...>`` in the Request-URI (the caller's in-dialog requests
    then go to the URI of the 200's Contact, taken with a regular expression)."""
    source = ROUTED / name if (ROUTED / name).exists() else SCENARIOS / name
    text = source.read_text().replace("transport=[transport]", "transport=udp")
    for answer in ('<recv response="200" rtd="true" rrs="true"/>',
                   '<recv response="200" rrs="true"/>'):
        text = text.replace(answer, answer[:-2] + '>\n    <action>\n      <ereg regexp='
                            '"sips?:[^>;]*" search_in="hdr" header="Contact:" '
                            'assign_to="peer_target"/>\n    </action>\n  </recv>')
    if "peer_target" in text:
        text = text.replace("[next_url]", "[$peer_target]")
    out = tmp_path / f"lc-{name}"
    out.write_text(text)
    return str(out)


def _udp_port(host: str) -> int:
    return free_port(host, socket.SOCK_DGRAM)


def _cdr(switch: Softswitch) -> dict[str, Any]:
    items = wait_until(lambda: switch.api.get("/api/v1/cdrs")["items"], timeout=10)
    assert items, switch.log()[-3000:]
    cdr: dict[str, Any] = items[-1]
    return cdr


def _gateways(switch: Softswitch, customer_ip: str, vendor: str) -> None:
    api = switch.api
    host, port = vendor.rsplit(":", 1)
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [customer_ip]})
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": host, "port": int(port)})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)


def _call(tmp_path: Path, switch: Softswitch, sippy: SippyB2bua, caller_to: str,
          vendor_port: int, caller: str, callee: str, **holds: int) -> None:
    vendor = sipp(lowercase_transport(tmp_path, callee), tmp_path, VENDOR_IP, vendor_port,
                  hold_ms=holds.get("callee_hold", 0))
    customer = sipp(lowercase_transport(tmp_path, caller), tmp_path, CUSTOMER_IP,
                    _udp_port(CUSTOMER_IP), caller_to, hold_ms=holds.get("caller_hold", 0))
    try:
        logs = lambda: customer.output() + vendor.output() + sippy.log() + \
            switch.log()[-3000:]  # noqa: E731
        assert customer.wait(40) == 0, logs()
        assert vendor.wait(20) == 0, logs()
    finally:
        customer.stop()
        vendor.stop()


def test_sippy_as_the_vendor(tmp_path: Path, softswitch: Softswitch) -> None:
    for caller, callee, holds, hangup_by in (
            ("uac_call.xml", "uas_answer.xml", {"caller_hold": 1000}, "caller"),
            ("uac_wait_bye.xml", "uas_hangup_rfc.xml", {"callee_hold": 1000}, "callee")):
        vendor_port = _udp_port(VENDOR_IP)
        sippy = SippyB2bua(tmp_path, SIPPY_IP, _udp_port(SIPPY_IP),
                           f"{VENDOR_IP}:{vendor_port}", "127.0.0.1").start()
        try:
            if hangup_by == "caller":
                _gateways(softswitch, CUSTOMER_IP, sippy.address)
            else:
                vendor = softswitch.api.get("/api/v1/routing-gateways")["items"][0]
                softswitch.api.call("PATCH", f"/api/v1/routing-gateways/{vendor['id']}",
                                    {"port": sippy.port},
                                    headers={"If-Match": "*"})
                time.sleep(1.2)  # picked up within a second
            _call(tmp_path, softswitch, sippy, f"127.0.0.1:{softswitch.sip_port}",
                  vendor_port, caller, callee, **holds)
        finally:
            sippy.stop()
        cdr = _cdr(softswitch)
        assert (cdr["final_code"], cdr["routing_gateway"], cdr["hangup_by"]) == (
            200, "vendor", hangup_by), cdr


def test_sippy_as_the_customer(tmp_path: Path, softswitch: Softswitch) -> None:
    vendor_port = _udp_port(VENDOR_IP)
    _gateways(softswitch, SIPPY_IP, f"{VENDOR_IP}:{vendor_port}")
    sippy = SippyB2bua(tmp_path, SIPPY_IP, _udp_port(SIPPY_IP),
                       f"127.0.0.1:{softswitch.sip_port}", CUSTOMER_IP).start()
    try:
        _call(tmp_path, softswitch, sippy, sippy.address, vendor_port, "uac_call.xml",
              "uas_answer.xml", caller_hold=1000)
        _call(tmp_path, softswitch, sippy, sippy.address, vendor_port, "uac_wait_bye.xml",
              "uas_hangup_rfc.xml", callee_hold=1000)
    finally:
        sippy.stop()
    cdrs = softswitch.api.get("/api/v1/cdrs")["items"]
    assert [(c["final_code"], c["mapping_gateway"], c["hangup_by"]) for c in cdrs] == [
        (200, "customer", "caller"), (200, "customer", "callee")], cdrs
