"""Phones registering to the softswitch, calling out and being called, with sipp and
pjsua2 peers over loopback."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pjpeer import PeerProcess
from rawsip import probe
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

pytestmark = pytest.mark.both_backends

PHONE_IP = "127.0.0.7"
PHONE2_IP = "127.0.0.8"


def setup(switch: Softswitch, *phones: dict[str, Any], vendor: bool = False,
          **params: Any) -> int | None:
    api = switch.api
    for phone in phones:
        api.post("/api/v1/phones", {"password": "pw-" + phone["username"], **phone})
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    port = free_port(VENDOR_IP) if vendor else None
    if port:
        api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                              "port": port})
    for name, value in params.items():
        api.put(f"/api/v1/parameters/{name}", {"value": value})
    assert wait_until(lambda: all(
        api.get("/api/v1/engine")["params"][n] == v for n, v in params.items()), timeout=2)
    time.sleep(0.3)  # one config poll for the phones table
    return port


def register(tmp_path: Path, switch: Softswitch, user: str, *, src_ip: str = PHONE_IP,
             port: int | None = None, expires: int = 300, password: str | None = None,
             scenario: str = "phone_register.xml") -> int:
    run = sipp(scenario, tmp_path, src_ip, port or free_port(src_ip),
               f"127.0.0.1:{switch.sip_port}",
               extra=["-au", user, "-ap", password or f"pw-{user}", "-key", "caller", user,
                      "-key", "expires", str(expires)])
    try:
        return run.wait()
    finally:
        run.stop()


def registrations(switch: Softswitch, user: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = switch.api.get("/api/v1/registrations")["items"]
    return [i for i in items if user is None or i["username"] == user]


def test_register_refresh_and_unregister(tmp_path: Path, softswitch: Softswitch) -> None:
    setup(softswitch, {"username": "1001"})
    port = free_port(PHONE_IP)
    assert register(tmp_path, softswitch, "1001", port=port, expires=600) == 0
    (reg,) = registrations(softswitch)
    assert reg["contact"] == f"sip:1001@{PHONE_IP}:{port};transport=UDP"
    assert (reg["source"], reg["nat"], reg["user_agent"]) == (f"{PHONE_IP}:{port}", False,
                                                              "sipp-phone")
    assert 590 <= reg["expires_at"] - time.time() <= 600
    # A refresh of the same contact keeps one binding with a new expiry.
    assert register(tmp_path, softswitch, "1001", port=port, expires=5000) == 0
    (again,) = registrations(softswitch)
    assert 3590 <= again["expires_at"] - time.time() <= 3600  # clamped to the maximum
    assert register(tmp_path, softswitch, "1001", port=port, expires=0) == 0
    assert registrations(softswitch) == []


def test_too_short_expiry_gets_423(tmp_path: Path, softswitch: Softswitch) -> None:
    setup(softswitch, {"username": "1001"}, SS_ENDPOINT_EXPIRE=[120, 900])
    assert register(tmp_path, softswitch, "1001", expires=60,
                    scenario="phone_register_423.xml") == 0
    assert registrations(softswitch) == []


def test_wrong_password_rechallenged_then_suspended(tmp_path: Path, softswitch: Softswitch
                                                    ) -> None:
    setup(softswitch, {"username": "1001"}, SS_SIP_AUTHENTICATION_RETRY=3,
          SS_ENDPOINT_REGISTER_RETRY=2, SS_ENDPOINT_REGISTER_SUSPEND=30)
    assert register(tmp_path, softswitch, "1001", password="guess",
                    scenario="phone_register_limit.xml") == 0
    (suspension,) = softswitch.api.get("/api/v1/suspensions")["items"]
    assert (suspension["terminal"], suspension["kind"]) == ("1001", "registration")
    assert 29 <= suspension["until"] - suspension["since"] <= 31
    # The suspended address hears nothing more (its one 403 ended the scenario) ...
    assert probe("REGISTER", softswitch.sip_port, PHONE_IP, user="1001") == []
    # ... while the phone at another address registers fine.
    assert register(tmp_path, softswitch, "1001", src_ip=PHONE2_IP) == 0


def test_replace_on_moves_the_binding(tmp_path: Path, softswitch: Softswitch) -> None:
    setup(softswitch, {"username": "1001"})
    assert register(tmp_path, softswitch, "1001", src_ip=PHONE_IP) == 0
    assert register(tmp_path, softswitch, "1001", src_ip=PHONE2_IP) == 0
    (reg,) = registrations(softswitch)
    assert reg["source"].startswith(PHONE2_IP)


def test_replace_off_refuses_a_second_contact(tmp_path: Path, softswitch: Softswitch) -> None:
    setup(softswitch, {"username": "1001"}, SS_ENDPOINT_REGISTER_REPLACE="Off")
    port = free_port(PHONE_IP)
    assert register(tmp_path, softswitch, "1001", port=port) == 0
    assert register(tmp_path, softswitch, "1001", src_ip=PHONE2_IP,
                    scenario="phone_register_403.xml") == 0
    (reg,) = registrations(softswitch)
    assert reg["source"] == f"{PHONE_IP}:{port}"
    # The phone already registered may still refresh.
    assert register(tmp_path, softswitch, "1001", port=port) == 0


def _pj_phone(tmp_path: Path, switch: Softswitch, user: str, ip: str, *extra: str
              ) -> PeerProcess:
    phone = PeerProcess(
        ["register", "--local", f"{ip}:{free_port(ip)}",
         "--registrar", f"sip:127.0.0.1:{switch.sip_port}", "--username", user,
         "--password", f"pw-{user}", "--expires", "300", *extra],
        tmp_path / f"phone-{user}.err")
    event = phone.wait_event("reg", timeout=15)
    assert event["code"] == 200, phone.describe() + switch.log()[-2000:]
    return phone


def test_call_to_a_registered_phone_and_480_when_not(tmp_path: Path, softswitch: Softswitch
                                                     ) -> None:
    setup(softswitch, {"username": "1001"}, {"username": "1002"})
    phone = _pj_phone(tmp_path, softswitch, "1001", PHONE_IP, "--answer", "--calls", "1",
                      "--hold", "20")
    try:
        caller = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                      f"127.0.0.1:{softswitch.sip_port}", service="1001", hold_ms=1000)
        assert caller.wait() == 0, caller.output() + softswitch.log()[-3000:]
        assert phone.wait_exit(timeout=30) == 0, phone.describe()
    finally:
        phone.close()
    assert "CONFIRMED" in phone.states()
    assert probe("INVITE", softswitch.sip_port, CUSTOMER_IP, user="1002") == [100, 480]
    cdrs = wait_until(lambda: len(softswitch.api.get("/api/v1/cdrs")["items"]) == 2)
    assert cdrs
    first, second = softswitch.api.get("/api/v1/cdrs")["items"]
    assert (first["callee_phone"], first["final_code"], first["routing_gateway"]) == (
        "1001", 200, None)
    assert (second["callee_phone"], second["final_code"]) == ("1002", 480)
    assert second["termination_reason"] == "phone not registered"


def test_registered_phone_calls_out_through_a_vendor(tmp_path: Path, softswitch: Softswitch
                                                     ) -> None:
    vendor_port = setup(softswitch, {"username": "1001"}, vendor=True)
    assert vendor_port is not None
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port)
    port = free_port(PHONE_IP)
    assert register(tmp_path, softswitch, "1001", port=port) == 0
    # The same address and user as the binding: no challenge for the call.
    caller = sipp("uac_call.xml", tmp_path, PHONE_IP, port,
                  f"127.0.0.1:{softswitch.sip_port}", service="00441234", hold_ms=300,
                  extra=["-key", "caller", "1001"])
    try:
        assert caller.wait() == 0, caller.output() + softswitch.log()[-2000:]
        assert vendor.wait() == 0
    finally:
        caller.stop()
        vendor.stop()
    (cdr,) = wait_until(lambda: softswitch.api.get("/api/v1/cdrs")["items"])
    assert (cdr["phone"], cdr["mapping_gateway"], cdr["routing_gateway"]) == (
        "1001", None, "vendor")
    # One challenge: the REGISTER's. The call from the binding's address needs none.
    assert softswitch.api.get("/api/v1/security/stats")["challenged"] == {"phone": 1}


def test_pjsua2_phone_calls_a_pjsua2_phone(tmp_path: Path, softswitch: Softswitch) -> None:
    setup(softswitch, {"username": "1001"}, {"username": "1002"})
    callee = _pj_phone(tmp_path, softswitch, "1002", PHONE2_IP, "--answer", "--calls", "1",
                       "--hold", "25")
    caller_port = free_port(PHONE_IP)
    try:
        caller = PeerProcess(
            ["call", "--local", f"{PHONE_IP}:{caller_port}",
             "--target", f"sip:1002@127.0.0.1:{softswitch.sip_port}",
             "--username", "1001", "--password", "pw-1001", "--caller", "1001",
             "--hold", "1", "--timeout", "20"],
            tmp_path / "caller.err")
        assert caller.wait_exit(timeout=30) == 0, caller.describe() + softswitch.log()[-3000:]
        assert callee.wait_exit(timeout=30) == 0, callee.describe()
    finally:
        callee.close()
    (cdr,) = wait_until(lambda: softswitch.api.get("/api/v1/cdrs")["items"])
    assert (cdr["phone"], cdr["callee_phone"], cdr["final_code"]) == ("1001", "1002", 200)


def test_unregister_through_the_api(tmp_path: Path, softswitch: Softswitch) -> None:
    setup(softswitch, {"username": "1001"})
    assert register(tmp_path, softswitch, "1001") == 0
    status, body, _ = softswitch.api.call("DELETE", "/api/v1/registrations/1001")
    assert (status, body) == (200, {"removed": 1})
    assert registrations(softswitch) == []
    status, _, _ = softswitch.api.call("DELETE", "/api/v1/registrations/1001")
    assert status == 404


def test_registrations_survive_kill_9(tmp_path: Path, backend_db: str | None) -> None:
    switch = Softswitch(tmp_path, db=backend_db).start()
    setup(switch, {"username": "1001"})
    port = free_port(PHONE_IP)
    assert register(tmp_path, switch, "1001", port=port) == 0
    before = registrations(switch)
    time.sleep(0.3)  # the database writer commits within milliseconds
    switch.stop(signal.SIGKILL)
    # The API child dies with the engine; its port comes free again.
    restarted = Softswitch(tmp_path, sip_port=switch.sip_port, api_port=switch.api_port,
                           db=backend_db)
    assert wait_until(lambda: _port_free(switch.api_port), timeout=10)
    restarted.start()
    try:
        assert registrations(restarted) == before
        vendorless = sipp("uas_answer.xml", tmp_path, PHONE_IP, port)
        caller = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                      f"127.0.0.1:{restarted.sip_port}", service="1001", hold_ms=300)
        assert caller.wait() == 0, caller.output() + restarted.log()[-2000:]
        assert vendorless.wait() == 0
    finally:
        assert restarted.stop() == 0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As a server would bind it: connections in TIME_WAIT do not hold the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
