"""The softswitch registering to vendors: challenge rounds (401 and 407), refresh
before expiry, retry after a failure, unregister on SIGTERM (and not when Off), live
changes, and a call from the vendor to the registered contact.

Each test runs on SQLite; on PostgreSQL too, except the 30 s retry delay, and with one
variant of the parametrized tests (the registration's storage is the same for each)."""

from __future__ import annotations

import signal
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from registrar_peer import RegistrarPeer
from sippctl import sipp
from support import Softswitch, free_port, wait_until

from b2bua.sip._dispatch import route

REGISTRAR_IP = "127.0.0.12"
BOTH = pytest.mark.both_backends


def on_backends(name: str, sqlite: list[Any], postgresql: list[Any]
                ) -> pytest.MarkDecorator:
    """Parametrize ``name`` with ``sqlite``'s values on SQLite and ``postgresql``'s on
    PostgreSQL (through the backend_db fixture)."""
    cases = [*((v, "sqlite") for v in sqlite), *((v, "postgresql") for v in postgresql)]
    return pytest.mark.parametrize((name, "backend_db"), cases, indirect=["backend_db"])


def setup(switch: Softswitch, registrar: RegistrarPeer, **registration: Any
          ) -> dict[str, Any]:
    api = switch.api
    gw = api.post("/api/v1/routing-gateways", {"name": "carrier", "host": REGISTRAR_IP,
                                               "port": registrar.port})
    api.put(f"/api/v1/routing-gateways/{gw['id']}/registration",
            {"username": "acct77", "password": "vendor-pw", **registration})
    return gw


def state(switch: Softswitch) -> dict[str, Any]:
    items = switch.api.get("/api/v1/upstream-registrations")["items"]
    return items[0] if items else {}


@on_backends("code", [401, 407], [401])
def test_register_answers_the_challenge_and_refreshes(tmp_path: Path, code: int,
                                                      backend_db: str | None) -> None:
    registrar = RegistrarPeer(REGISTRAR_IP, free_port(REGISTRAR_IP), "acct77", "vendor-pw",
                              code=code, grant=4)
    switch = Softswitch(tmp_path, db=backend_db).start()
    try:
        setup(switch, registrar)
        assert wait_until(lambda: state(switch).get("state") == "registered", timeout=5)
        first = state(switch)
        assert 2 <= first["expires_at"] - time.time() <= 4.5  # Auto: what was granted
        # A refresh at half the granted 4 s, with the same Call-ID and a higher CSeq.
        assert wait_until(lambda: state(switch)["refreshes"] >= 2, timeout=8)
    finally:
        assert switch.stop() == 0
        registrar.close()
    seen = registrar.seen
    assert [s.answered for s in seen[:2]] == [code, 200]
    assert seen[1].authorized
    assert len({s.call_id for s in seen}) == 1
    cseqs = [s.cseq for s in seen]
    assert cseqs == sorted(cseqs) and len(set(cseqs)) == len(cseqs)
    oks = [s.at for s in seen if s.answered == 200 and s.expires > 0]
    gaps = [b - a for a, b in pairwise(oks)]
    assert gaps and all(1.5 <= g <= 2.6 for g in gaps), gaps
    # SIGTERM: REGISTER Expires: 0, challenged and answered with the same credentials.
    last = [s for s in seen if s.expires == 0]
    assert [s.answered for s in last] == [code, 200] and last[1].authorized


@BOTH
def test_no_unregister_when_off(tmp_path: Path, backend_db: str | None) -> None:
    registrar = RegistrarPeer(REGISTRAR_IP, free_port(REGISTRAR_IP), "acct77", "vendor-pw")
    switch = Softswitch(tmp_path, db=backend_db).start()
    try:
        switch.api.put("/api/v1/parameters/SS_SIP_USER_AGENT_SEND_UNREGISTER",
                       {"value": "Off"})
        setup(switch, registrar, expire=600)
        assert wait_until(lambda: state(switch).get("state") == "registered", timeout=5)
        assert registrar.seen[-1].expires == 600
    finally:
        assert switch.stop() == 0
        registrar.close()
    assert all(s.expires != 0 for s in registrar.seen)


@BOTH
def test_kill_9_sends_nothing(tmp_path: Path, backend_db: str | None) -> None:
    registrar = RegistrarPeer(REGISTRAR_IP, free_port(REGISTRAR_IP), "acct77", "vendor-pw")
    switch = Softswitch(tmp_path, db=backend_db).start()
    try:
        setup(switch, registrar)
        assert wait_until(lambda: state(switch).get("state") == "registered", timeout=5)
        count = len(registrar.seen)
    finally:
        switch.stop(signal.SIGKILL)
        time.sleep(0.5)
        registrar.close()
    assert len(registrar.seen) == count


def test_failure_then_retry_after_the_delay(tmp_path: Path) -> None:
    registrar = RegistrarPeer(REGISTRAR_IP, free_port(REGISTRAR_IP), "acct77", "vendor-pw",
                              fail_first=1)
    switch = Softswitch(tmp_path).start()
    try:
        switch.api.put("/api/v1/parameters/SS_SIP_USER_AGENT_RETRY_DELAY", {"value": 30})
        time.sleep(0.5)
        setup(switch, registrar)
        assert wait_until(lambda: state(switch).get("state") == "failed", timeout=5)
        failed = state(switch)
        assert failed["last_code"] == 503
        assert 28 <= failed["retry_at"] - time.time() <= 30.5
        assert wait_until(lambda: state(switch).get("state") == "registered", timeout=35)
    finally:
        assert switch.stop() == 0
        registrar.close()
    first, retry = registrar.seen[0], registrar.seen[1]
    assert first.answered == 503 and 29 <= retry.at - first.at <= 31.5


@BOTH
def test_wrong_password_is_a_failure_and_a_new_password_acts_live(
        tmp_path: Path, backend_db: str | None) -> None:
    registrar = RegistrarPeer(REGISTRAR_IP, free_port(REGISTRAR_IP), "acct77", "vendor-pw")
    switch = Softswitch(tmp_path, db=backend_db).start()
    try:
        gw = setup(switch, registrar, password="wrong")
        assert wait_until(lambda: state(switch).get("state") == "failed", timeout=5)
        assert state(switch)["last_code"] == 403
        switch.api.put(f"/api/v1/routing-gateways/{gw['id']}/registration",
                       {"username": "acct77", "password": "vendor-pw"})
        assert wait_until(lambda: state(switch).get("state") == "registered", timeout=5)
        # Disabling unregisters at once.
        switch.api.put(f"/api/v1/routing-gateways/{gw['id']}/registration",
                       {"username": "acct77", "enabled": False})
        assert wait_until(lambda: registrar.seen[-1].expires == 0
                          and registrar.seen[-1].answered == 200, timeout=5)
        assert wait_until(lambda: state(switch) == {}, timeout=3)
        status, body, _ = switch.api.call(
            "GET", f"/api/v1/routing-gateways/{gw['id']}/registration")
        assert status == 200 and "password" not in body
    finally:
        assert switch.stop() == 0
        registrar.close()


@on_backends("workers", [1, 2], [2])
def test_call_from_the_vendor_to_the_registered_contact(tmp_path: Path, workers: int,
                                                        backend_db: str | None) -> None:
    """With two signalling workers, worker 0 registers and both take the vendor's calls."""
    calls = 16 if workers > 1 else 1  # enough that both workers get some
    registrar = RegistrarPeer(REGISTRAR_IP, free_port(REGISTRAR_IP), "acct77", "vendor-pw")
    switch = Softswitch(tmp_path, extra_args=["--signalling-workers", str(workers)],
                        db=backend_db).start()
    phone_port = free_port("127.0.0.7")
    try:
        api = switch.api
        setup(switch, registrar)
        api.post("/api/v1/phones", {"username": "2001", "password": "pw"})
        assert wait_until(lambda: state(switch).get("state") == "registered", timeout=5)
        # The phone (registered with sipp) answers; the vendor calls our contact
        # (Request-URI user acct77) for the DID 2001 (To).
        reg = sipp("phone_register.xml", tmp_path, "127.0.0.7", phone_port,
                   f"127.0.0.1:{switch.sip_port}",
                   extra=["-au", "2001", "-ap", "pw", "-key", "caller", "2001",
                          "-key", "expires", "300"])
        assert reg.wait() == 0
        time.sleep(1.0)  # the other workers follow the binding and the registration
        phone = sipp("uas_answer.xml", tmp_path, "127.0.0.7", phone_port, calls=calls)
        registrar.close()  # free the vendor's address for its calling side
        vendor = sipp("uac_did_call.xml", tmp_path, REGISTRAR_IP, free_port(REGISTRAR_IP),
                      f"127.0.0.1:{switch.sip_port}", service="acct77", hold_ms=300,
                      calls=calls, rate=20, extra=["-key", "did", "2001"])
        assert vendor.wait() == 0, vendor.output() + switch.log()[-2000:]
        assert phone.wait() == 0
        cdrs = wait_until(lambda: len(api.get("/api/v1/cdrs")["items"]) == calls and
                          api.get("/api/v1/cdrs")["items"])
        assert {(c["origin_vendor"], c["callee"], c["callee_phone"]) for c in cdrs} == {
            ("carrier", "2001", "2001")}
        assert len({route(_call_id(c["call_id_in"]), workers) for c in cdrs}) == workers
    finally:
        switch.stop()


def _call_id(value: str) -> bytes:
    return f"INVITE sip:x SIP/2.0\r\nCall-ID: {value}\r\n\r\n".encode()


@on_backends("code", [401, 407], [401])
def test_sipp_registrar_sees_challenge_rounds_and_the_unregister(
        tmp_path: Path, code: int, backend_db: str | None) -> None:
    port = free_port(REGISTRAR_IP)
    registrar = sipp(f"uas_registrar_{code}.xml", tmp_path, REGISTRAR_IP, port, timeout_s=20)
    switch = Softswitch(tmp_path, db=backend_db).start()
    try:
        api = switch.api
        gw = api.post("/api/v1/routing-gateways", {"name": "carrier", "host": REGISTRAR_IP,
                                                   "port": port})
        api.put(f"/api/v1/routing-gateways/{gw['id']}/registration",
                {"username": "acct77", "password": "vendor-pw", "expire": 600})
        assert wait_until(lambda: state(switch).get("state") == "registered", timeout=5)
    finally:
        assert switch.stop() == 0  # SIGTERM: the unregister round
    try:
        assert registrar.wait(10) == 0, registrar.output()
    finally:
        registrar.stop()
