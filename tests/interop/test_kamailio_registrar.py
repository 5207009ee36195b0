"""Registering to a vendor whose registrar is Debian's kamailio (digest, usrloc in
memory; ``tests/interop/kamailio/registrar.cfg``): the softswitch registers, a call for
a DID reaches it through the vendor's registrar at its registered contact and is routed
on; deleting the registration unregisters, and the registrar then knows no contact."""

from __future__ import annotations

import json
from pathlib import Path

from dnsmasq import Dns
from kamailio import Kamailio
from sippctl import VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

REGISTRAR_IP = "127.0.0.25"
VENDOR_CALLER_IP = "127.0.0.26"  # the vendor's own side, calling through its registrar


def test_register_to_kamailio_be_called_through_it_unregister(
        tmp_path: Path, softswitch: Softswitch) -> None:
    registrar = Kamailio(tmp_path, REGISTRAR_IP, free_port(REGISTRAR_IP),
                         config="registrar.cfg",
                         values={"USER": "acct77", "PASSWORD": "vendor-pw",
                                 "REALM": "vendor.test"}).start()
    terminator_port = free_port(VENDOR_IP)
    api = softswitch.api
    try:
        carrier = api.post("/api/v1/routing-gateways", {
            "name": "carrier", "host": REGISTRAR_IP, "port": registrar.port,
            "prefixes": ["99"]})
        api.post("/api/v1/routing-gateways", {"name": "terminator", "host": VENDOR_IP,
                                              "port": terminator_port, "prefixes": ["44"]})
        api.put(f"/api/v1/routing-gateways/{carrier['id']}/registration",
                {"username": "acct77", "password": "vendor-pw", "expire": 300})

        def state() -> str:
            items = api.get("/api/v1/upstream-registrations")["items"]
            return str(items[0]["state"]) if items else ""

        assert wait_until(lambda: state() == "registered", timeout=10), \
            json.dumps(api.get("/api/v1/upstream-registrations")) + registrar.log()
        terminator = sipp("uas_answer.xml", tmp_path, VENDOR_IP, terminator_port)
        inbound = sipp("uac_did_call.xml", tmp_path, VENDOR_CALLER_IP,
                       free_port(VENDOR_CALLER_IP), registrar.address, service="acct77",
                       hold_ms=500, extra=["-key", "did", "4420001"])
        try:
            assert inbound.wait(30) == 0, inbound.output() + softswitch.log()[-3000:] + \
                registrar.log()
            assert terminator.wait(10) == 0, terminator.output()
        finally:
            inbound.stop()
            terminator.stop()
        (cdr,) = wait_until(lambda: api.get("/api/v1/cdrs")["items"], timeout=5)
        assert (cdr["origin_vendor"], cdr["callee"], cdr["routing_gateway"],
                cdr["final_code"]) == ("carrier", "4420001", "terminator", 200), cdr
        # Unregister: the registrar answers the next call for the account with 404.
        api.call("DELETE", f"/api/v1/routing-gateways/{carrier['id']}/registration")
        assert wait_until(lambda: b"expires 0" in registrar.log_path.read_bytes(),
                          timeout=10), registrar.log()
        refused = sipp("uac_did_call.xml", tmp_path, VENDOR_CALLER_IP,
                       free_port(VENDOR_CALLER_IP), registrar.address, service="acct77",
                       extra=["-key", "did", "4420001"])
        assert refused.wait(20) != 0  # the scenario expects a 200; it gets 404
        assert "404" in refused.output(), refused.output()
    finally:
        registrar.stop()


def test_register_to_a_registrar_found_by_srv(tmp_path: Path) -> None:
    """A vendor given as a DNS name without a port: its registrar (the gateway's own
    host) is found by SRV on dnsmasq and registered to; its calls are recognised."""
    registrar = Kamailio(tmp_path, REGISTRAR_IP, free_port(REGISTRAR_IP),
                         config="registrar.cfg",
                         values={"USER": "acct78", "PASSWORD": "vendor-pw",
                                 "REALM": "carrier.test"}).start()
    dns = Dns(tmp_path, [f"srv-host=_sip._udp.carrier.test,sbc.carrier.test,"
                         f"{registrar.port},10,10",
                         f"host-record=sbc.carrier.test,{REGISTRAR_IP}"]).start()
    switch = Softswitch(tmp_path / "switch", extra_args=[
        "--dns-server", f"127.0.0.1:{dns.port}"])
    (tmp_path / "switch").mkdir()
    switch.start()
    try:
        api = switch.api
        carrier = api.post("/api/v1/routing-gateways", {
            "name": "carrier", "host": "carrier.test", "port": None, "prefixes": ["99"]})
        api.put(f"/api/v1/routing-gateways/{carrier['id']}/registration",
                {"username": "acct78", "password": "vendor-pw", "expire": 300})

        def registration() -> dict[str, object]:
            items = api.get("/api/v1/upstream-registrations")["items"]
            return dict(items[0]) if items else {}

        assert wait_until(lambda: registration().get("state") == "registered",
                          timeout=10), json.dumps(registration()) + registrar.log()
        assert registration()["registrar"] == \
            f"carrier.test at {REGISTRAR_IP}:{registrar.port}"
        assert b"saved acct78" in registrar.log_path.read_bytes()
    finally:
        assert switch.stop() == 0
        dns.stop()
        registrar.stop()
