"""baresip 1.0 (Debian's) as a phone: registers with the default digest settings, calls
out through the softswitch to a sipp vendor, and is called by a customer trunk.

baresip runs headless from a config folder written into tmp_path (``baresip -f DIR``):
a 440 Hz tone (``ausine``) as microphone, ``aubridge`` as loudspeaker, no audio device;
it is driven and watched through its ``ctrl_tcp`` module (netstring JSON).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

BARESIP_IP = "127.0.0.21"
PASSWORD = "pw-1001-long"

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed")


class Baresip:
    """One baresip process with one account, controlled over ctrl_tcp."""

    def __init__(self, folder: Path, switch: Softswitch, user: str, password: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port(BARESIP_IP)
        self.ctrl_port = free_port()
        (folder / "config").write_text("\n".join([
            "poll_method epoll",
            # RTP from and to 127.0.0.1: its RTP socket is not bound to BARESIP_IP, so the
            # kernel sends from 127.0.0.1, and the SDP must say so (the relay only takes
            # RTP from the address the SDP gives, unless the phone is behind NAT).
            "net_interface 127.0.0.1",
            "ausrc_srate 48000",  # the only rate and layout ausine makes
            "ausrc_channels 2",
            f"sip_listen {BARESIP_IP}:{self.port}",
            "audio_player aubridge,nil",
            "audio_source ausine,440",
            "audio_alert aubridge,nil",
            "module_path /usr/lib/baresip/modules",
            "module g711.so",
            "module ausine.so",
            "module aubridge.so",
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            "",
        ]))
        (folder / "accounts").write_text(
            f"<sip:{user}@127.0.0.1:{switch.sip_port};transport=udp>;auth_pass={password};"
            "regint=300;answermode=auto\n")
        self.log_path = folder / "baresip.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["baresip", "-f", str(folder), "-v"], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.ctrl = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("baresip did not start:\n" + self.log()) from None
                time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def command(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.ctrl.sendall(str(len(body)).encode() + b":" + body + b",")

    def _read(self, timeout: float) -> None:
        self.ctrl.settimeout(timeout)
        try:
            chunk = self.ctrl.recv(65536)
        except TimeoutError:
            return
        if not chunk:
            raise AssertionError("baresip closed its control connection:\n" + self.log())
        self._buffer += chunk
        while b":" in self._buffer:
            length, _, rest = self._buffer.partition(b":")
            size = int(length)
            if len(rest) < size + 1:
                break
            message = json.loads(rest[:size])
            self._buffer = rest[size + 1:]
            if message.get("event"):
                self.events.append(message)

    def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("type") == kind:
                    self.events.remove(event)
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [e.get("type") for e in self.events]
                raise AssertionError(f"no {kind} from baresip (saw {seen}):\n{self.log()}")
            self._read(min(remaining, 0.5))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.command("quit")
        with contextlib.suppress(OSError):
            self.ctrl.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # this test's own process, by its handle
            self.proc.wait()


@pytest.fixture
def phone(tmp_path: Path, softswitch: Softswitch) -> Iterator[tuple[Softswitch, int]]:
    """Phone account 1001, a customer trunk by IP and a vendor; the vendor's port."""
    api = softswitch.api
    api.post("/api/v1/phones", {"username": "1001", "password": PASSWORD})
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    vendor_port = free_port(VENDOR_IP)
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                          "port": vendor_port})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)
    time.sleep(0.3)  # one config poll for the phones table
    yield softswitch, vendor_port


def _registered(switch: Softswitch) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = switch.api.get("/api/v1/registrations")["items"]
    return items


def test_registers_with_the_default_settings(tmp_path: Path,
                                             phone: tuple[Softswitch, int]) -> None:
    switch, _ = phone
    assert switch.api.get("/api/v1/engine")["params"]["SS_SIP_AUTHENTICATION_ALGORITHM"] == \
        "MD5"
    ua = Baresip(tmp_path / "baresip", switch, "1001", PASSWORD)
    try:
        (reg,) = wait_until(lambda: _registered(switch), timeout=10)
        assert reg["username"] == "1001" and reg["source"] == f"{BARESIP_IP}:{ua.port}"
        assert "baresip" in reg["user_agent"]
        assert switch.api.get("/api/v1/security/stats")["authenticated"] == {"phone": 1}
    finally:
        ua.close()


@pytest.mark.parametrize("algorithms", ["MD5+SHA-256", "SHA-256+MD5"])
def test_two_challenge_headers_defeat_baresip(tmp_path: Path, phone: tuple[Softswitch, int],
                                              algorithms: str) -> None:
    """Why the default is one header: offered MD5 and SHA-256 (in either order), baresip
    1.0 gives up without answering."""
    switch, _ = phone
    switch.api.put("/api/v1/parameters/SS_SIP_AUTHENTICATION_ALGORITHM",
                   {"value": algorithms})
    assert wait_until(lambda: switch.api.get("/api/v1/engine")["params"][
        "SS_SIP_AUTHENTICATION_ALGORITHM"] == algorithms, timeout=2)
    ua = Baresip(tmp_path / "baresip", switch, "1001", PASSWORD)
    try:
        assert wait_until(lambda: "Register: Function not implemented" in ua.log(), timeout=10)
        assert _registered(switch) == []
        stats = switch.api.get("/api/v1/security/stats")
        assert stats["challenged"] == {"phone": 1} and stats["authenticated"] == {}
    finally:
        ua.close()


def test_calls_out_through_the_softswitch(tmp_path: Path,
                                          phone: tuple[Softswitch, int]) -> None:
    """Its tone crosses the relay to the vendor, which echoes it back: RTP both ways in
    the relay's counters."""
    switch, vendor_port = phone
    switch.api.put("/api/v1/parameters/SS_MEDIAPROXYMODE", {"value": "On"})
    vendor = sipp("uas_hangup.xml", tmp_path, VENDOR_IP, vendor_port, hold_ms=1500,
                  extra=["-rtp_echo", "-mi", VENDOR_IP,
                         "-mp", str(free_port(VENDOR_IP) & ~3)])
    ua = Baresip(tmp_path / "baresip", switch, "1001", PASSWORD)
    try:
        assert wait_until(lambda: _registered(switch), timeout=10), ua.log()
        ua.command("dial", f"sip:4930123456@127.0.0.1:{switch.sip_port}")
        ua.wait_event("CALL_ESTABLISHED")
        ua.wait_event("CALL_CLOSED", timeout=15)  # the vendor hangs up
        assert vendor.wait(20) == 0, vendor.output()
    finally:
        ua.close()
        vendor.stop()
    (cdr,) = wait_until(lambda: switch.api.get("/api/v1/cdrs")["items"], timeout=3)
    assert (cdr["phone"], cdr["callee"], cdr["final_code"]) == ("1001", "4930123456", 200)
    media = json.loads(cdr["media"])
    assert media["relayed"], media
    # 20 ms packets for the 1.5 s the vendor holds the call, each way (the echo).
    assert media["caller_to_callee_packets"] >= 40, media
    assert media["callee_to_caller_packets"] >= 40, media


def test_is_called_through_the_softswitch(tmp_path: Path,
                                          phone: tuple[Softswitch, int]) -> None:
    switch, _ = phone
    ua = Baresip(tmp_path / "baresip", switch, "1001", PASSWORD)
    try:
        assert wait_until(lambda: _registered(switch), timeout=10), ua.log()
        caller = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                      f"127.0.0.1:{switch.sip_port}", service="1001", hold_ms=1500)
        ua.wait_event("CALL_ESTABLISHED")  # answermode=auto
        assert caller.wait(20) == 0, caller.output()
        ua.wait_event("CALL_CLOSED")
    finally:
        ua.close()
    (cdr,) = wait_until(lambda: switch.api.get("/api/v1/cdrs")["items"], timeout=3)
    assert (cdr["callee_phone"], cdr["final_code"]) == ("1001", 200)
