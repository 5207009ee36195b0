"""Behind and in front of Debian's kamailio, record-routing as a carrier edge does
(``tests/interop/kamailio/proxy.cfg``): the caller's ACK, BYE and re-INVITE, and the
vendor's, reach the softswitch and go back through the proxy; a phone registered
through it (Path) is called through it.

Addresses: the softswitch on 127.0.0.1, the customer's proxy on 127.0.0.21 (the
customer trunk as the softswitch sees it), the vendor's proxy on 127.0.0.22, the
phones' proxy on 127.0.0.23; sipp peers on the sippctl addresses.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kamailio import Kamailio
from pjpeer import PeerProcess
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

ROUTED = Path(__file__).parent / "sipp"
CUSTOMER_EDGE = "127.0.0.21"
VENDOR_EDGE = "127.0.0.22"
PHONE_EDGE = "127.0.0.23"
PHONE_IP = "127.0.0.24"


def scenario(name: str) -> str:
    return str(ROUTED / name)


@pytest.fixture
def edge(tmp_path: Path, softswitch: Softswitch) -> Iterator[Kamailio]:
    """kamailio in front of the softswitch: the customer trunk's calls come through it."""
    proxy = Kamailio(tmp_path, CUSTOMER_EDGE, free_port(CUSTOMER_EDGE),
                     f"127.0.0.1:{softswitch.sip_port}").start()
    try:
        yield proxy
    finally:
        proxy.stop()


def gateways(switch: Softswitch, customer_ip: str, vendor_host: str, vendor_port: int) -> None:
    api = switch.api
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [customer_ip]})
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": vendor_host,
                                          "port": vendor_port})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)


def last_cdr(switch: Softswitch, count: int = 1) -> dict[str, Any]:
    assert wait_until(lambda: len(switch.api.get("/api/v1/cdrs")["items"]) >= count,
                      timeout=10), switch.log()[-3000:]
    row = switch.api.get("/api/v1/cdrs?tail=1")["items"][0]
    cdr: dict[str, Any] = switch.api.get(f"/api/v1/cdrs/{row['id']}")
    return cdr


def pair(tmp_path: Path, switch: Softswitch, proxies: list[Kamailio], caller: str,
         callee: str, caller_to: str, vendor_port: int, *, caller_hold: int = 0,
         callee_hold: int = 0, timeout: float = 60, service: str = "200") -> None:
    vendor = sipp(callee, tmp_path, VENDOR_IP, vendor_port, hold_ms=callee_hold,
                  timeout_s=int(timeout))
    customer = sipp(caller, tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP), caller_to,
                    hold_ms=caller_hold, timeout_s=int(timeout), service=service)
    logs = lambda: (customer.output() + vendor.output() + switch.log()[-3000:]  # noqa: E731
                    + "".join(p.log() for p in proxies))
    try:
        assert customer.wait(timeout + 10) == 0, logs()
        assert vendor.wait(timeout + 10) == 0, logs()
    finally:
        customer.stop()
        vendor.stop()


# -- the customer's calls come through the proxy --------------------------------------------

@pytest.mark.parametrize("caller, vendor, holds, outcome", [
    ("uac_routed_call.xml", "uas_answer.xml", {"caller_hold": 1000},
     (200, "caller", "caller BYE")),
    ("uac_routed_wait_bye.xml", "uas_hangup.xml", {"callee_hold": 1000},
     (200, "callee", "callee BYE")),
    ("uac_routed_cancel.xml", "uas_ring_cancelled.xml", {}, (487, "caller", "caller CANCEL")),
    ("uac_routed_reinvite.xml", "uas_reinvite.xml", {}, (200, "caller", "caller BYE")),
], ids=["answered-and-hung-up-by-the-caller", "hung-up-by-the-vendor", "cancels",
        "reinvites"])
def test_caller_behind_proxy(tmp_path: Path, softswitch: Softswitch, edge: Kamailio,
                             caller: str, vendor: str, holds: dict[str, int],
                             outcome: tuple[int, str, str]) -> None:
    """The caller's ACK, BYE and re-INVITE reach us through its proxy (our 1xx and 2xx
    carry its Record-Route); our BYE to it goes through the proxy with its Route."""
    vendor_port = free_port(VENDOR_IP)
    gateways(softswitch, CUSTOMER_EDGE, VENDOR_IP, vendor_port)
    pair(tmp_path, softswitch, [edge], scenario(caller), vendor, edge.address, vendor_port,
         **holds)
    cdr = last_cdr(softswitch)
    assert (cdr["final_code"], cdr["hangup_by"], cdr["termination_reason"]) == outcome


def test_call_behind_proxy_outlives_the_ack_deadline(
        tmp_path: Path, softswitch: Softswitch, edge: Kamailio) -> None:
    """The caller's ACK, routed by the proxy, reaches the softswitch: the call is not
    ended at 32 s for want of it."""
    vendor_port = free_port(VENDOR_IP)
    gateways(softswitch, CUSTOMER_EDGE, VENDOR_IP, vendor_port)
    started = time.monotonic()
    pair(tmp_path, softswitch, [edge], scenario("uac_routed_call.xml"), "uas_answer.xml",
         edge.address, vendor_port, caller_hold=41000, timeout=70)
    cdr = last_cdr(softswitch)
    assert (cdr["final_code"], cdr["termination_reason"]) == (200, "caller BYE"), cdr
    assert cdr["duration"] >= 40 and time.monotonic() - started >= 41


# -- the vendor sits behind a proxy ---------------------------------------------------------

@pytest.fixture
def vendor_edge(tmp_path: Path) -> Iterator[Kamailio]:
    vendor_port = free_port(VENDOR_IP)
    proxy = Kamailio(tmp_path, VENDOR_EDGE, free_port(VENDOR_EDGE),
                     f"{VENDOR_IP}:{vendor_port}").start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _vendor_port(proxy: Kamailio) -> int:
    return int(proxy.next_hop.rsplit(":", 1)[1])


@pytest.mark.parametrize("caller, vendor, holds, outcome", [
    ("uac_call.xml", "uas_routed_answer.xml", {"caller_hold": 1000}, (200, "caller")),
    ("uac_wait_bye.xml", "uas_routed_hangup.xml", {"callee_hold": 1000}, (200, "callee")),
    ("uac_cancel.xml", "uas_ring_cancelled.xml", {}, (487, "caller")),
], ids=["ack-and-our-bye-through-it", "vendor-hangs-up-through-it", "cancel-through-it"])
def test_vendor_behind_proxy(tmp_path: Path, softswitch: Softswitch, vendor_edge: Kamailio,
                             caller: str, vendor: str, holds: dict[str, int],
                             outcome: tuple[int, str]) -> None:
    """Our ACK and BYE to the vendor follow the route set of its 200 (Record-Route,
    reversed), our CANCEL goes where the INVITE went; its own BYE comes back through its
    proxy."""
    gateways(softswitch, CUSTOMER_IP, VENDOR_EDGE, vendor_edge.port)
    far_end = scenario(vendor) if (ROUTED / vendor).exists() else vendor
    pair(tmp_path, softswitch, [vendor_edge], caller, far_end,
         f"127.0.0.1:{softswitch.sip_port}", _vendor_port(vendor_edge), **holds)
    cdr = last_cdr(softswitch)
    assert (cdr["final_code"], cdr["hangup_by"]) == outcome


# -- a phone registered through a proxy (Path) ----------------------------------------------

def test_phone_registered_through_proxy_is_called_through_it(
        tmp_path: Path, softswitch: Softswitch) -> None:
    """A pjsua2 phone with kamailio as its outbound proxy: kamailio adds a Path to its
    REGISTER; the softswitch's INVITE to it goes to kamailio with that Path as Route."""
    proxy = Kamailio(tmp_path, PHONE_EDGE, free_port(PHONE_EDGE),
                     f"127.0.0.1:{softswitch.sip_port}").start()
    api = softswitch.api
    api.post("/api/v1/phones", {"username": "3001", "password": "Phone-secret-3001"})
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    assert wait_until(lambda: api.get("/api/v1/engine")["mapping_gateways"] == 1, timeout=2)
    phone = PeerProcess(
        ["register", "--local", f"{PHONE_IP}:{free_port(PHONE_IP)}",
         "--registrar", f"sip:127.0.0.1:{softswitch.sip_port}",
         "--proxy", f"sip:{proxy.address};lr", "--username", "3001",
         "--password", "Phone-secret-3001", "--expires", "300", "--answer", "--calls", "1",
         "--hold", "30", "--timeout", "35"], tmp_path / "phone.err")
    customer = None
    try:
        regs = wait_until(lambda: api.get("/api/v1/registrations")["items"], timeout=15)
        assert regs, phone.describe() + proxy.log()
        (reg,) = regs
        assert reg["source"].startswith(PHONE_EDGE) and len(reg["path"]) == 1, reg
        assert f"sip:{proxy.address};lr" in reg["path"][0]
        customer = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                        f"127.0.0.1:{softswitch.sip_port}", service="3001", hold_ms=1000)
        assert customer.wait(30) == 0, customer.output() + softswitch.log()[-3000:] + \
            proxy.log()
        phone.wait_event("incoming", 5)
    finally:
        if customer is not None:
            customer.stop()
        phone.close()
        proxy.stop()
    cdr = last_cdr(softswitch)
    assert (cdr["final_code"], cdr["callee_phone"], cdr["hangup_by"]) == (200, "3001", "caller")
