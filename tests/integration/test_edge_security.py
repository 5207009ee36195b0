"""Edge security with real peers: IP, IP+port and password modes, silent drop, retries,
timeouts and suspensions. Distinct loopback addresses stand for distinct hosts."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from capture import Capture
from pjpeer import PeerProcess
from rawsip import exchange, probe, request, status_codes
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

from b2bua.security.digest import response_digest

STRANGER_IP = "127.0.0.9"
NATTED_IP = "127.0.0.5"
OTHER_IP = "127.0.0.6"


def vendor_and(switch: Softswitch, *mapping: dict[str, Any], **params: Any) -> int:
    """A routing gateway to a sipp vendor on VENDOR_IP, the given mapping gateways and
    parameters; returns the vendor's port once the engine has loaded it all."""
    api = switch.api
    port = free_port(VENDOR_IP)
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP, "port": port})
    for gw in mapping:
        api.post("/api/v1/mapping-gateways", gw)
    for name, value in params.items():
        api.put(f"/api/v1/parameters/{name}", {"value": value})
    assert wait_until(
        lambda: api.get("/api/v1/engine")["mapping_gateways"] == len(mapping)
        and all(api.get("/api/v1/engine")["params"][n] == v for n, v in params.items()),
        timeout=2,
    )
    return port


PASSWORD_GW = {"name": "natted", "auth_mode": "password", "username": "gw1",
               "password": "s3cret"}


def call(tmp_path: Path, switch: Softswitch, vendor_port: int | None, scenario: str,
         src_ip: str, *, src_port: int | None = None, password: str = "s3cret",
         user: str = "gw1", hold_ms: int = 0, caller: str | None = None,
         timeout_s: int = 30) -> tuple[int, int | None]:
    """Run a caller scenario (and a vendor answering, if any); their exit codes."""
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port) if vendor_port else None
    caller = sipp(scenario, tmp_path, src_ip, src_port or free_port(src_ip),
                  f"127.0.0.1:{switch.sip_port}", hold_ms=hold_ms, timeout_s=timeout_s,
                  extra=["-au", user, "-ap", password, "-key", "caller", caller or user])
    try:
        code = caller.wait()
        vcode = vendor.wait() if vendor and code == 0 else None
    finally:
        caller.stop()
        if vendor:
            vendor.stop()
    return code, vcode


def security(switch: Softswitch) -> dict[str, Any]:
    stats: dict[str, Any] = switch.api.get("/api/v1/security/stats")
    return stats


def test_ip_mode_accepts_listed_ip_only(tmp_path: Path, softswitch: Softswitch) -> None:
    port = vendor_and(softswitch, {"name": "c", "ips": [CUSTOMER_IP]})
    assert call(tmp_path, softswitch, port, "uac_call.xml", CUSTOMER_IP) == (0, 0)
    # Another address is a stranger: challenged like any (SS_REPLY_UNAUTHORIZED On).
    assert probe("INVITE", softswitch.sip_port, OTHER_IP) == [401]
    assert security(softswitch)["challenged"]["unknown"] == 1


def test_ip_port_mode_needs_the_port_too(tmp_path: Path, softswitch: Softswitch) -> None:
    right = free_port(CUSTOMER_IP)
    port = vendor_and(softswitch, {"name": "c", "auth_mode": "ip_port", "ips": [CUSTOMER_IP],
                                   "port": right})
    assert probe("INVITE", softswitch.sip_port, CUSTOMER_IP) == [401]
    assert call(tmp_path, softswitch, port, "uac_call.xml", CUSTOMER_IP, src_port=right) == (
        0, 0)


def test_gateways_sharing_an_ip_most_specific_wins(tmp_path: Path, softswitch: Softswitch
                                                   ) -> None:
    right = free_port(CUSTOMER_IP)
    port = vendor_and(softswitch,
                      {"name": "by-ip", "ips": [CUSTOMER_IP]},
                      {"name": "by-port", "auth_mode": "ip_port", "ips": [CUSTOMER_IP],
                       "port": right})
    assert call(tmp_path, softswitch, port, "uac_call.xml", CUSTOMER_IP, src_port=right) == (
        0, 0)
    assert call(tmp_path, softswitch, port, "uac_call.xml", CUSTOMER_IP) == (0, 0)
    cdrs = wait_until(lambda: len(softswitch.api.get("/api/v1/cdrs")["items"]) == 2)
    assert cdrs
    names = [c["mapping_gateway"] for c in softswitch.api.get("/api/v1/cdrs")["items"]]
    assert names == ["by-port", "by-ip"]


@pytest.mark.parametrize("code", [401, 407])
def test_password_mode_call_through_the_challenge(tmp_path: Path, softswitch: Softswitch,
                                                  code: int) -> None:
    port = vendor_and(softswitch, PASSWORD_GW, SS_SIP_AUTHENTICATION_CODE=code)
    assert call(tmp_path, softswitch, port, "uac_auth.xml", NATTED_IP) == (0, 0)
    stats = security(softswitch)
    assert stats["challenged"]["gateway"] == 1 and stats["authenticated"]["gateway"] == 1
    (cdr,) = wait_until(lambda: softswitch.api.get("/api/v1/cdrs")["items"])
    assert (cdr["mapping_gateway"], cdr["final_code"]) == ("natted", 200)


PBX_CALLER = "+4930555123"


def test_pbx_trunk_with_the_callers_number_in_from(tmp_path: Path, softswitch: Softswitch
                                                   ) -> None:
    """An Asterisk/FreeSWITCH-style password trunk: From names the caller's number, no
    credentials until challenged, then the gateway's username and password."""
    port = vendor_and(softswitch, PASSWORD_GW)
    assert call(tmp_path, softswitch, port, "uac_pbx_trunk.xml", NATTED_IP,
                caller=PBX_CALLER) == (0, 0)
    stats = security(softswitch)
    assert stats["challenged"] == {"unknown": 1}  # the caller's number is nobody's
    assert stats["authenticated"] == {"gateway": 1}
    (cdr,) = wait_until(lambda: softswitch.api.get("/api/v1/cdrs")["items"])
    assert (cdr["mapping_gateway"], cdr["caller"], cdr["final_code"]) == (
        "natted", PBX_CALLER, 200)


def test_pbx_trunk_hears_nothing_when_reply_unauthorized_is_off(
    tmp_path: Path, softswitch: Softswitch
) -> None:
    """Off: a password trunk that is not registered is an unknown source (nothing in its
    INVITE says who it is before credentials), so it hears nothing; docs/security.md."""
    vendor_and(softswitch, PASSWORD_GW, SS_REPLY_UNAUTHORIZED="Off")
    with Capture(tmp_path / "off.pcap", f"host {NATTED_IP}") as cap:
        code, _ = call(tmp_path, softswitch, None, "uac_pbx_trunk.xml", NATTED_IP,
                       caller=PBX_CALLER, timeout_s=3)
    assert code != 0  # sipp gave up waiting
    assert cap.packets(f"ip.src==127.0.0.1 && ip.dst=={NATTED_IP} && (udp || icmp)") == []
    stats = security(softswitch)
    assert stats["dropped"]["unknown_source"] >= 1 and stats["challenged"] == {}


def test_wrong_password_rechallenged_until_the_retry_limit(tmp_path: Path,
                                                           softswitch: Softswitch) -> None:
    vendor_and(softswitch, PASSWORD_GW, SS_SIP_AUTHENTICATION_RETRY=3)
    assert call(tmp_path, softswitch, None, "uac_auth_limit.xml", NATTED_IP,
                password="guess") == (0, None)
    stats = security(softswitch)
    assert stats["challenged"]["gateway"] == 3
    assert stats["rejected"]["retry_limit"] == 1
    assert softswitch.api.get("/api/v1/suspensions")["items"] == []


def test_authentication_timeout(tmp_path: Path, softswitch: Softswitch) -> None:
    vendor_and(softswitch, PASSWORD_GW, SS_SIP_AUTHENTICATION_TIMEOUT=1)
    assert call(tmp_path, softswitch, None, "uac_auth_slow.xml", NATTED_IP,
                hold_ms=1500) == (0, None)
    assert security(softswitch)["rejected"]["authentication_timeout"] == 1


def test_suspension_after_failures_lifted_by_the_api(tmp_path: Path, softswitch: Softswitch
                                                     ) -> None:
    port = vendor_and(softswitch, PASSWORD_GW, SS_AUTHENTICATION_MAX_RETRY=2)
    before = time.time()
    # Three wrong answers: the third passes the limit of 2 and suspends.
    assert call(tmp_path, softswitch, None, "uac_auth_limit.xml", NATTED_IP,
                password="guess") == (0, None)
    (suspension,) = softswitch.api.get("/api/v1/suspensions")["items"]
    assert (suspension["terminal"], suspension["source_ip"]) == ("gw1", NATTED_IP)
    assert suspension["failures"] == 3
    assert before + 179 <= suspension["until"] <= time.time() + 181
    # The right password from the suspended source: the suspension was told once (the
    # third answer's 403); from now on nothing comes back, not even a challenge.
    assert probe("INVITE", softswitch.sip_port, NATTED_IP, 0.5, from_user="gw1") == []
    # The same account from elsewhere still works.
    assert call(tmp_path, softswitch, port, "uac_auth.xml", OTHER_IP) == (0, 0)
    status, _, _ = softswitch.api.call("DELETE", f"/api/v1/suspensions/gw1?source_ip={NATTED_IP}")
    assert status == 200
    assert softswitch.api.get("/api/v1/suspensions")["items"] == []
    assert call(tmp_path, softswitch, port, "uac_auth.xml", NATTED_IP) == (0, 0)
    status, _, _ = softswitch.api.call("DELETE", "/api/v1/suspensions/gw1")
    assert status == 404
    assert security(softswitch)["suspended"]["authentication"] == 1


def test_suspension_ends_by_itself(tmp_path: Path, softswitch: Softswitch) -> None:
    """A registration guesser's suspension (SS_ENDPOINT_REGISTER_SUSPEND allows a few
    seconds; the authentication suspension's 60 s minimum ends by the same clock, which
    tests/unit/test_policy.py walks with a fake one): refused while it lasts, gone from
    the API when it ends, and the terminal calls again without anyone lifting it."""
    port = vendor_and(softswitch, PASSWORD_GW, SS_ENDPOINT_REGISTER_RETRY=2,
                      SS_ENDPOINT_REGISTER_SUSPEND=3)
    dst = ("127.0.0.1", softswitch.sip_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((NATTED_IP, 0))
        local = int(sock.getsockname()[1])
        for i in range(3):  # the third wrong answer passes the limit of 2
            first = _send(sock, request("REGISTER", "127.0.0.1", softswitch.sip_port,
                                        NATTED_IP, local, user="gw1", from_user="gw1",
                                        call_id=f"guess-{i}"), dst)
            auth = _authorization(first[0], f"sip:gw1@127.0.0.1:{softswitch.sip_port}",
                                  "00000001", method="REGISTER", password=f"guess{i}")
            _send(sock, request("REGISTER", "127.0.0.1", softswitch.sip_port, NATTED_IP,
                                local, user="gw1", from_user="gw1", call_id=f"guess-{i}",
                                extra=auth), dst)
    (suspension,) = softswitch.api.get("/api/v1/suspensions")["items"]
    assert (suspension["terminal"], suspension["source_ip"]) == ("gw1", NATTED_IP)
    assert probe("INVITE", softswitch.sip_port, NATTED_IP, 0.5, from_user="gw1") == []
    time.sleep(max(0.0, suspension["until"] - time.time()) + 0.5)
    assert softswitch.api.get("/api/v1/suspensions")["items"] == []
    assert call(tmp_path, softswitch, port, "uac_auth.xml", NATTED_IP) == (0, 0)
    assert security(softswitch)["suspended"]["registration"] == 1


@pytest.mark.parametrize("reply", ["On", "Off"])
def test_suspended_terminal_hears_at_most_one_403(tmp_path: Path, softswitch: Softswitch,
                                                  reply: str) -> None:
    """A guesser that keeps going after its suspension: counted, not answered. With On
    the suspension itself was told by one 403; with Off not even that."""
    vendor_and(softswitch, PASSWORD_GW, SS_AUTHENTICATION_MAX_RETRY=2,
               SS_ENDPOINT_REGISTER_RETRY=2, SS_REPLY_UNAUTHORIZED=reply)
    dst = ("127.0.0.1", softswitch.sip_port)
    heard: list[int] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((NATTED_IP, 0))
        port = int(sock.getsockname()[1])
        for i in range(40):  # one session each, as a password-guessing tool does
            call_id = f"guess-{i}"
            # From the fourth session on silence is expected: a short wait each, and any
            # late reply is still heard by the drain below.
            wait = 1.0 if i < 3 else 0.1
            first = _send(sock, request("REGISTER", "127.0.0.1", softswitch.sip_port, NATTED_IP,
                                        port, user="gw1", from_user="gw1", call_id=call_id),
                          dst, wait)
            heard += status_codes(first)
            if not first:
                continue
            auth = _authorization(first[0], f"sip:gw1@127.0.0.1:{softswitch.sip_port}",
                                  "00000001", method="REGISTER", password=f"guess{i}")
            heard += status_codes(_send(sock, request(
                "REGISTER", "127.0.0.1", softswitch.sip_port, NATTED_IP, port, user="gw1",
                from_user="gw1", call_id=call_id, extra=auth), dst, wait))
        heard += status_codes(_drain(sock, 1.0))
    # Two wrong answers are challenged again, the third suspends.
    assert heard[:5] == [401, 401, 401, 401, 401]
    assert heard[5:] == ([403] if reply == "On" else [])
    stats = security(softswitch)
    assert stats["suspended"]["registration"] == 1
    assert stats["dropped"]["suspended"] == 37 + (reply == "Off")
    metrics = softswitch.api.call("GET", "/api/v1/metrics")[1]
    assert 'security_dropped_total{reason="suspended"}' in str(metrics)


def test_pjsua2_account_calls_in_password_mode(tmp_path: Path, softswitch: Softswitch) -> None:
    port = vendor_and(softswitch, PASSWORD_GW)
    peers: list[PeerProcess] = []
    try:
        callee = PeerProcess(["answer", "--local", f"{VENDOR_IP}:{port}", "--timeout", "25"],
                             tmp_path / "callee.err")
        peers.append(callee)
        callee.wait_event("ready", timeout=10)
        caller = PeerProcess(
            ["call", "--local", f"{NATTED_IP}:{free_port(NATTED_IP)}",
             "--target", f"sip:777@127.0.0.1:{softswitch.sip_port}",
             "--username", "gw1", "--password", "s3cret", "--caller", "gw1",
             "--hold", "1", "--timeout", "20"],
            tmp_path / "caller.err")
        peers.append(caller)
        assert caller.wait_exit(timeout=30) == 0, caller.describe() + softswitch.log()[-2000:]
        assert callee.wait_exit(timeout=30) == 0, callee.describe()
    finally:
        for peer in peers:
            peer.close()
    assert security(softswitch)["authenticated"]["gateway"] == 1


GARBAGE = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not SIP at all\r\n\r\n"


def _probe_everything(switch_port: int) -> tuple[list[bytes], bytes, bool]:
    """OPTIONS, REGISTER, INVITE and garbage over UDP, and OPTIONS over TCP, from
    STRANGER_IP; returns UDP replies, TCP bytes received, whether TCP was closed."""
    replies: list[bytes] = []
    for method in ("OPTIONS", "REGISTER", "INVITE"):
        src = free_port(STRANGER_IP)
        got, _ = exchange(request(method, "127.0.0.1", switch_port, STRANGER_IP, src),
                          STRANGER_IP, ("127.0.0.1", switch_port), 0.5, src_port=src)
        replies += list(dict.fromkeys(got))  # a final response retransmitted counts once
    got, _ = exchange(GARBAGE, STRANGER_IP, ("127.0.0.1", switch_port), 0.5)
    replies += got
    with socket.create_connection(("127.0.0.1", switch_port), timeout=3,
                                  source_address=(STRANGER_IP, 0)) as conn:
        port = conn.getsockname()[1]
        conn.sendall(request("OPTIONS", "127.0.0.1", switch_port, STRANGER_IP, port))
        received = b""
        closed = False
        conn.settimeout(2)
        try:
            while chunk := conn.recv(4096):
                received += chunk
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
    return replies, received, closed


def test_reply_unauthorized_off_sends_not_one_byte(tmp_path: Path, softswitch: Softswitch
                                                   ) -> None:
    port = vendor_and(softswitch, {"name": "c", "ips": [CUSTOMER_IP]},
                      SS_REPLY_UNAUTHORIZED="Off")
    with Capture(tmp_path / "scan.pcap", f"host {STRANGER_IP}") as cap:
        replies, tcp_bytes, closed = _probe_everything(softswitch.sip_port)
    assert replies == [] and tcp_bytes == b""
    assert closed, "the TCP connection of an unknown source must be closed"
    sent_back = cap.packets(f"ip.src==127.0.0.1 && ip.dst=={STRANGER_IP} && "
                            "(udp || tcp.len>0 || icmp)")
    assert sent_back == []
    assert len(cap.packets(f"ip.src=={STRANGER_IP} && (udp || tcp.len>0)")) == 5
    dropped = security(softswitch)["dropped"]["unknown_source"]
    assert dropped == 4  # OPTIONS, REGISTER, INVITE over UDP, OPTIONS over TCP
    # Known sources are not affected.
    assert call(tmp_path, softswitch, port, "uac_call.xml", CUSTOMER_IP) == (0, 0)


def test_reply_unauthorized_on_answers_with_the_documented_codes(softswitch: Softswitch
                                                                 ) -> None:
    vendor_and(softswitch, {"name": "c", "ips": [CUSTOMER_IP]})
    # The same challenge for everything out of dialog, whatever it names.
    assert probe("OPTIONS", softswitch.sip_port, STRANGER_IP) == [401]
    assert probe("INVITE", softswitch.sip_port, STRANGER_IP) == [401]
    assert probe("REGISTER", softswitch.sip_port, STRANGER_IP) == [401]
    # In-dialog strays match no account: 403.
    assert probe("BYE", softswitch.sip_port, STRANGER_IP, to_tag="x1") == [403]
    replies, tcp_bytes, _ = _probe_everything(softswitch.sip_port)
    assert b"SIP/2.0 401" in tcp_bytes
    assert sorted(int(r.split(b" ")[1]) for r in replies) == [401, 401, 401]


# -- the digest's uri (RFC 3261 22.4) ------------------------------------------------------

REALM_RE = re.compile(rb'realm="([^"]+)"')
NONCE_RE = re.compile(rb'nonce="([^"]+)"')


def _send(sock: socket.socket, data: bytes, dst: tuple[str, int],
          wait: float = 1.0) -> list[bytes]:
    sock.sendto(data, dst)
    return _drain(sock, wait)


def _drain(sock: socket.socket, wait: float) -> list[bytes]:
    """What arrives within ``wait`` seconds, then while replies keep coming."""
    replies = []
    sock.settimeout(wait)
    try:
        while True:
            replies.append(sock.recv(65535))
            sock.settimeout(0.3)
    except TimeoutError:
        pass
    return replies


def _authorization(reply: bytes, digest_uri: str, nc: str, method: str = "INVITE",
                   password: str = "s3cret") -> str:
    realm_m, nonce_m = REALM_RE.search(reply), NONCE_RE.search(reply)
    assert realm_m and nonce_m
    realm, nonce = realm_m.group(1).decode(), nonce_m.group(1).decode()
    response = response_digest("MD5", "gw1", realm, password, method, digest_uri, nonce,
                               nc, "c0ffee", "auth")
    return (f'Authorization: Digest username="gw1", realm="{realm}", nonce="{nonce}", '
            f'uri="{digest_uri}", response="{response}", algorithm=MD5, qop=auth, '
            f'nc={nc}, cnonce="c0ffee"')


def test_digest_for_another_target_is_rechallenged(softswitch: Softswitch) -> None:
    vendor_and(softswitch, PASSWORD_GW)
    dst = ("127.0.0.1", softswitch.sip_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((NATTED_IP, 0))
        port = int(sock.getsockname()[1])

        def invite(user: str, auth: str = "") -> list[bytes]:
            return _send(sock, request("INVITE", "127.0.0.1", softswitch.sip_port, NATTED_IP,
                                       port, user=user, from_user="gw1", extra=auth), dst)

        (challenge,) = invite("100")
        assert status_codes([challenge]) == [401]
        # Right password, but computed for 100 while the request goes to 900.
        wrong_target = _authorization(challenge, f"sip:100@127.0.0.1:{softswitch.sip_port}",
                                      "00000001")
        replies = invite("900", wrong_target)
        assert status_codes(replies) == [401]  # challenged again: not authorised
        before = security(softswitch)
        assert before["authenticated"].get("gateway", 0) == 0
        assert softswitch.api.get("/api/v1/suspensions")["items"] == []  # not a guess
        # The same password for the request's own target passes (the host and port in
        # the uri compared as a host and a port: default port, letter case).
        right = _authorization(replies[0], f"sip:900@127.0.0.1:{softswitch.sip_port}",
                               "00000001")
        passed = invite("900", right)
        assert 401 not in status_codes(passed)
        assert security(softswitch)["authenticated"]["gateway"] == 1
