"""Vendors by DNS name (RFC 3263) against a real DNS server: Debian's dnsmasq on loopback
serving SRV and A records, the softswitch run with ``--dns-server``, sipp as the vendor.

Addresses: the customer calls from 127.0.0.2; the SRV targets are 127.0.0.6 (nothing
answers there) and 127.0.0.7 (sipp); 127.0.0.8 is a vendor by IP address.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnsmasq import DNSMASQ, TTL, Dns
from rawsip import probe
from sipcaller import place_call
from sippctl import CUSTOMER_IP, Sipp, sipp
from support import Softswitch, free_port, wait_until

DEAD_IP, LIVE_IP, PLAIN_IP = "127.0.0.6", "127.0.0.7", "127.0.0.8"

pytestmark = pytest.mark.skipif(not (os.path.exists(DNSMASQ) and shutil.which("sipp")),
                                reason="needs dnsmasq (dnsmasq-base) and sipp")


@pytest.fixture
def ports() -> dict[str, int]:
    return {"dead": free_port(DEAD_IP), "live": free_port(LIVE_IP),
            "plain": free_port(PLAIN_IP)}


def vendor_zone(ports: dict[str, int], *, dead: bool = True) -> list[str]:
    records = [f"srv-host=_sip._udp.vendor.test,live.vendor.test,{ports['live']},20,10",
               f"host-record=live.vendor.test,{LIVE_IP}"]
    if dead:
        records += [f"srv-host=_sip._udp.vendor.test,dead.vendor.test,{ports['dead']},10,10",
                    f"host-record=dead.vendor.test,{DEAD_IP}"]
    return records


@pytest.fixture
def dns_factory(tmp_path: Path) -> Iterator[list[Dns]]:
    started: list[Dns] = []
    yield started
    for server in started:
        server.stop()


def start_dns(started: list[Dns], workdir: Path, records: list[str]) -> Dns:
    server = Dns(workdir, records)
    started.append(server)
    return server.start()


@pytest.fixture
def switch_with_dns(tmp_path: Path, dns_factory: list[Dns], ports: dict[str, int]
                    ) -> Iterator[tuple[Softswitch, Dns]]:
    dns = start_dns(dns_factory, tmp_path, vendor_zone(ports))
    switch = Softswitch(tmp_path, extra_args=["--dns-server", f"127.0.0.1:{dns.port}"]).start()
    try:
        yield switch, dns
    finally:
        code = switch.stop()
        assert code == 0, f"softswitch exit code {code}\n{switch.log()[-3000:]}"


def provision(switch: Softswitch, gateways: list[dict[str, Any]]) -> None:
    api = switch.api
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    for gateway in gateways:
        api.post("/api/v1/routing-gateways", gateway)
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == len(gateways),
                      timeout=3)


def cdrs(switch: Softswitch, count: int) -> list[dict[str, Any]]:
    api = switch.api
    items = wait_until(lambda: len(api.get("/api/v1/cdrs")["items"]) >= count and
                       api.get("/api/v1/cdrs")["items"], timeout=5)
    assert items and len(items) == count, items
    return [api.get(f"/api/v1/cdrs/{item['id']}") for item in sorted(items,
                                                                       key=lambda i: i["id"])]


def attempts(detail: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(a["routing_gateway"], a["outcome"], a["target"]) for a in detail["attempts"]]


def answering_vendor(tmp_path: Path, ip: str, port: int, calls: int = 1) -> Sipp:
    return sipp("uas_answer.xml", tmp_path, ip, port, calls=calls, timeout_s=20)


def test_srv_targets_in_priority_order_dead_first_then_answered(
    tmp_path: Path, switch_with_dns: tuple[Softswitch, Dns], ports: dict[str, int]
) -> None:
    switch, dns = switch_with_dns
    provision(switch, [{"name": "vendor", "host": "vendor.test", "port": None,
                        "invite_timeout": 1}])
    vendor = answering_vendor(tmp_path, LIVE_IP, ports["live"])
    try:
        result = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), "4420001")
        assert vendor.wait(20) == 0, vendor.output() + switch.log()[-3000:]
    finally:
        vendor.stop()
    assert result.final == 200
    (detail,) = cdrs(switch, 1)
    dead, live = f"{DEAD_IP}:{ports['dead']}", f"{LIVE_IP}:{ports['live']}"
    assert attempts(detail) == [("vendor", "invite_timeout", dead),
                                ("vendor", "answered", live)], switch.log()[-3000:]
    assert detail["routing_gateway"] == "vendor"
    assert "_sip._udp.vendor.test" in dns.log()
    # Requests from a resolved address count as the vendor's: an OPTIONS from the SRV
    # target is answered, one from an unknown address is not.
    assert probe("OPTIONS", switch.sip_port, LIVE_IP) == [200]
    assert 200 not in probe("OPTIONS", switch.sip_port, "127.0.0.9")


def test_503_from_the_first_target_moves_to_the_next(
    tmp_path: Path, switch_with_dns: tuple[Softswitch, Dns], ports: dict[str, int]
) -> None:
    switch, _dns = switch_with_dns
    provision(switch, [{"name": "vendor", "host": "vendor.test"}])
    busy = sipp("uas_reject_503.xml", tmp_path, DEAD_IP, ports["dead"], timeout_s=20)
    vendor = answering_vendor(tmp_path, LIVE_IP, ports["live"])
    try:
        result = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), "4420001")
        assert busy.wait(20) == 0, busy.output()
        assert vendor.wait(20) == 0, vendor.output()
    finally:
        busy.stop()
        vendor.stop()
    assert result.final == 200
    (detail,) = cdrs(switch, 1)
    assert [(a["outcome"], a["final_code"], a["target"]) for a in detail["attempts"]] == [
        ("failed", 503, f"{DEAD_IP}:{ports['dead']}"),
        ("answered", 200, f"{LIVE_IP}:{ports['live']}")]


def test_name_that_does_not_resolve_fails_cleanly_then_fails_over(
    tmp_path: Path, switch_with_dns: tuple[Softswitch, Dns], ports: dict[str, int]
) -> None:
    switch, _dns = switch_with_dns
    provision(switch, [{"name": "nowhere", "host": "nowhere.test", "priority": 1}])
    result = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), "4420001")
    assert result.final == 503
    (only,) = cdrs(switch, 1)
    assert attempts(only) == [("nowhere", "dns_failure", None)]
    assert only["termination_reason"] == "no address for nowhere.test (no such name)"
    # With a second vendor (by IP address), the call goes on to it.
    switch.api.post("/api/v1/routing-gateways", {"name": "plain", "host": PLAIN_IP,
                                                 "port": ports["plain"], "priority": 2})
    assert wait_until(lambda: switch.api.get("/api/v1/engine")["routing_gateways"] == 2,
                      timeout=3)
    vendor = answering_vendor(tmp_path, PLAIN_IP, ports["plain"])
    try:
        result = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), "4420001")
        assert vendor.wait(20) == 0, vendor.output()
    finally:
        vendor.stop()
    assert result.final == 200
    second = cdrs(switch, 2)[1]
    assert attempts(second) == [("nowhere", "dns_failure", None),
                                ("plain", "answered", f"{PLAIN_IP}:{ports['plain']}")]
    counters = switch.api.get("/api/v1/stats")["counters"]
    assert counters["dns_failures"] == 2
    assert counters["dns"]["negative"] >= 1


def test_cached_answer_outlives_the_dns_server(
    tmp_path: Path, dns_factory: list[Dns], ports: dict[str, int]
) -> None:
    dns = start_dns(dns_factory, tmp_path, vendor_zone(ports, dead=False))
    switch = Softswitch(tmp_path, extra_args=["--dns-server", f"127.0.0.1:{dns.port}"]).start()
    try:
        provision(switch, [{"name": "vendor", "host": "vendor.test"}])
        vendor = answering_vendor(tmp_path, LIVE_IP, ports["live"], calls=2)
        try:
            first = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), "4420001")
            assert first.final == 200
            dns.stop()
            time.sleep(TTL + 1.5)  # every answer now past its TTL, refreshes failing
            second = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), "4420002")
            assert vendor.wait(20) == 0, vendor.output()
        finally:
            vendor.stop()
        assert second.final == 200, switch.log()[-3000:]
        live = f"{LIVE_IP}:{ports['live']}"
        details = cdrs(switch, 2)
        assert [attempts(d) for d in details] == [[("vendor", "answered", live)]] * 2
        dns_counters = switch.api.get("/api/v1/stats")["counters"]["dns"]
        assert dns_counters["failures"] >= 1 and dns_counters["stale_served"] >= 1, \
            (dns_counters, switch.log()[-3000:])
    finally:
        code = switch.stop()
        assert code == 0, f"softswitch exit code {code}\n{switch.log()[-3000:]}"


def test_vendor_contact_given_by_name_gets_the_ack_and_bye(
    tmp_path: Path, switch_with_dns: tuple[Softswitch, Dns], ports: dict[str, int]
) -> None:
    """A vendor whose 200 names its Contact by host name: our ACK and BYE go to the
    address that name has (RFC 3263 4.2: A records, the URI's port)."""
    switch, dns = switch_with_dns
    provision(switch, [{"name": "vendor", "host": LIVE_IP, "port": ports["live"]}])
    scenario = tmp_path / "uas_answer_named_contact.xml"
    scenario.write_text((Path(__file__).parents[1] / "sipp" / "uas_answer.xml").read_text()
                        .replace("Contact: <sip:vendor@[local_ip]:[local_port]",
                                 "Contact: <sip:vendor@live.vendor.test:[local_port]"))
    vendor = sipp(str(scenario), tmp_path, LIVE_IP, ports["live"], timeout_s=20)
    caller = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                  f"127.0.0.1:{switch.sip_port}", hold_ms=500)
    try:
        assert caller.wait(30) == 0, caller.output() + switch.log()[-3000:]
        assert vendor.wait(20) == 0, vendor.output() + switch.log()[-3000:]  # ACK, BYE
    finally:
        caller.stop()
        vendor.stop()
    assert "live.vendor.test" in dns.log()
    (detail,) = cdrs(switch, 1)
    assert (detail["final_code"], detail["hangup_by"]) == (200, "caller")
