"""Media through the relay with real RTP: one softswitch (passthrough), two chained
softswitches with each payload cipher between them (one applying the ciphers in the
relay's C loop, the other in Python, both ways round), a key mismatch, and latching."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from capture import Capture
from rtppeer import AnsweringVendor, RtpEndpoint, media_address, payload_of, sdp
from sipcaller import place_call
from sippctl import CUSTOMER_IP, VENDOR_IP
from support import Softswitch, free_port, wait_until

SECOND_IP = "127.0.0.20"
KEYS = {1: "xor-secret", 2: "rc4-secret-16byt", 3: "0123456789abcdef"}
PACKETS = 50


def _relay_call(switch_port: int, switch_ip: str, caller_rtp: RtpEndpoint,
                vendor_rtp: RtpEndpoint, vendor: AnsweringVendor) -> None:
    """Place a call, then send RTP both ways through whatever the SDPs point at."""

    def media(answer_sdp: str) -> None:
        caller_rtp.send(media_address(answer_sdp), PACKETS)
        vendor_rtp.send(vendor.offered(), PACKETS, first_seq=1001)

    result = place_call(CUSTOMER_IP, (switch_ip, switch_port), "4420001",
                        offer=sdp(CUSTOMER_IP, caller_rtp.port), on_answer=media, hold=0.5)
    assert result.final == 200


def _configure(switch: Softswitch, mapping_ip: str, vendor_ip: str, vendor_port: int,
               *, to_next: bool = False, from_prev: bool = False, mode: int = 0,
               key: str = "", relay: str = "On") -> None:
    api = switch.api
    api.put("/api/v1/parameters/SS_MEDIAPROXYMODE", {"value": relay})
    if mode:
        api.put("/api/v1/parameters/SS_RTPENCRYPTIONKEY", {"value": key})
        api.put("/api/v1/parameters/SS_RTPENCRYPTIONMODE", {"value": mode})
    api.post("/api/v1/mapping-gateways", {"name": "in", "ips": [mapping_ip],
                                          "rtp_encryption": from_prev})
    api.post("/api/v1/routing-gateways", {"name": "out", "host": vendor_ip,
                                          "port": vendor_port, "rtp_encryption": to_next})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)


def _cdr_media(switch: Softswitch) -> dict[str, Any]:
    items = wait_until(lambda: switch.api.get("/api/v1/cdrs")["items"], timeout=5)
    media: dict[str, Any] = json.loads(items[-1]["media"])
    return media


def test_audio_passes_unchanged_through_one_softswitch(softswitch: Softswitch) -> None:
    vendor_port = free_port(VENDOR_IP)
    caller_rtp, vendor_rtp = RtpEndpoint(CUSTOMER_IP), RtpEndpoint(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp)
    try:
        _configure(softswitch, CUSTOMER_IP, VENDOR_IP, vendor_port)
        _relay_call(softswitch.sip_port, "127.0.0.1", caller_rtp, vendor_rtp, vendor)
        assert wait_until(lambda: len(vendor_rtp.received) >= PACKETS and
                          len(caller_rtp.received) >= PACKETS, timeout=3)
    finally:
        vendor.close()
        caller_rtp.close()
        vendor_rtp.close()
    # The vendor's SDP offer points at the relay, not at the caller.
    assert vendor.offered()[0] == "127.0.0.1"
    assert vendor_rtp.payloads() == [payload_of(s) for s in range(1, PACKETS + 1)]
    assert caller_rtp.payloads() == [payload_of(s) for s in range(1001, 1001 + PACKETS)]
    media = _cdr_media(softswitch)
    assert media["relayed"] is True
    assert media["caller_to_callee_packets"] == PACKETS
    assert media["callee_to_caller_packets"] == PACKETS
    assert media["encryption_mode"] == 0


def test_no_relay_leaves_sdp_untouched(softswitch: Softswitch) -> None:
    vendor_port = free_port(VENDOR_IP)
    caller_rtp, vendor_rtp = RtpEndpoint(CUSTOMER_IP), RtpEndpoint(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp)
    try:
        _configure(softswitch, CUSTOMER_IP, VENDOR_IP, vendor_port, relay="Off")
        _relay_call(softswitch.sip_port, "127.0.0.1", caller_rtp, vendor_rtp, vendor)
    finally:
        vendor.close()
        caller_rtp.close()
        vendor_rtp.close()
    assert vendor.offered() == (CUSTOMER_IP, caller_rtp.port)
    assert _cdr_media(softswitch) == {"relayed": False}


@pytest.mark.parametrize("mode", [1, 2, 3])
@pytest.mark.parametrize(("first_ciphers", "second_ciphers"), [("c", "python"),
                                                               ("python", "c")])
def test_encrypted_between_two_softswitches(tmp_path: Path, mode: int, first_ciphers: str,
                                            second_ciphers: str) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = Softswitch(tmp_path / "one",
                       extra_args=["--relay-ciphers", first_ciphers]).start()
    second = Softswitch(tmp_path / "two", sip_host=SECOND_IP,
                        extra_args=["--relay-ciphers", second_ciphers]).start()
    vendor_port = free_port(VENDOR_IP)
    caller_rtp, vendor_rtp = RtpEndpoint(CUSTOMER_IP), RtpEndpoint(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp)
    try:
        key = KEYS[mode]
        _configure(first, CUSTOMER_IP, SECOND_IP, second.sip_port, to_next=True, mode=mode,
                   key=key)
        _configure(second, "127.0.0.1", VENDOR_IP, vendor_port, from_prev=True, mode=mode,
                   key=key)
        with Capture(tmp_path / "hop.pcap", f"udp and host {SECOND_IP}") as cap:
            _relay_call(first.sip_port, "127.0.0.1", caller_rtp, vendor_rtp, vendor)
            assert wait_until(lambda: len(vendor_rtp.received) >= PACKETS and
                              len(caller_rtp.received) >= PACKETS, timeout=3)
        media = {"c": [], "python": []}
        for switch, where in ((first, first_ciphers), (second, second_ciphers)):
            media[where].append(_cdr_media(switch))
    finally:
        vendor.close()
        caller_rtp.close()
        vendor_rtp.close()
        first.stop()
        second.stop()
    # The caller sends first, the vendor after: the vendor's packets find both legs
    # latched and are relayed by the C loop where the ciphers are in C (all but the
    # latching packet), and by Python where they are not.
    (in_c,), (in_python,) = media["c"], media["python"]
    assert in_c["encryption_mode"] == in_python["encryption_mode"] == mode
    assert in_c["packets_in_c"] >= PACKETS - 10 and in_python["packets_in_c"] == 0
    assert in_c["cipher_errors"] == in_python["cipher_errors"] == 0
    plain = [payload_of(s) for s in range(1, PACKETS + 1)]
    assert vendor_rtp.payloads() == plain
    assert caller_rtp.payloads() == [payload_of(s) for s in range(1001, 1001 + PACKETS)]
    hop = _hop_packets(cap, SECOND_IP)
    assert len(hop) >= 2 * PACKETS  # both directions crossed the encrypted hop
    for data in hop:
        seq = int.from_bytes(data[2:4], "big")
        assert data[:2] == b"\x80\x00" and len(data) == 12 + 160  # header, length intact
        assert data[12:] != payload_of(seq)  # payload encrypted on the wire


def _hop_packets(cap: Capture, ip: str) -> list[bytes]:
    import subprocess

    out = subprocess.run(
        ["tshark", "-r", str(cap.path), "-Y",
         f"((ip.src==127.0.0.1 && ip.dst=={ip}) || (ip.src=={ip} && ip.dst==127.0.0.1))"
         " && udp && !sip",
         "-T", "fields", "-e", "udp.payload"],
        capture_output=True, text=True, timeout=60, check=True).stdout.split()
    return [bytes.fromhex(h.replace(":", "")) for h in out if len(h.replace(":", "")) == 344]


def test_key_mismatch_garbles_the_payload(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = Softswitch(tmp_path / "one").start()
    second = Softswitch(tmp_path / "two", sip_host=SECOND_IP).start()
    vendor_port = free_port(VENDOR_IP)
    caller_rtp, vendor_rtp = RtpEndpoint(CUSTOMER_IP), RtpEndpoint(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp)
    try:
        _configure(first, CUSTOMER_IP, SECOND_IP, second.sip_port, to_next=True, mode=3,
                   key="0123456789abcdef")
        _configure(second, "127.0.0.1", VENDOR_IP, vendor_port, from_prev=True, mode=3,
                   key="fedcba9876543210")
        _relay_call(first.sip_port, "127.0.0.1", caller_rtp, vendor_rtp, vendor)
        assert wait_until(lambda: len(vendor_rtp.received) >= PACKETS, timeout=3)
    finally:
        vendor.close()
        caller_rtp.close()
        vendor_rtp.close()
        first.stop()
        second.stop()
    got = vendor_rtp.payloads()
    assert all(len(p) == 160 for p in got)
    assert not any(p == payload_of(s) for s, p in enumerate(got, start=1))


def test_latching_follows_the_real_source_port(softswitch: Softswitch) -> None:
    vendor_port = free_port(VENDOR_IP)
    caller_rtp, advertised, actual = (RtpEndpoint(CUSTOMER_IP), RtpEndpoint(VENDOR_IP),
                                      RtpEndpoint(VENDOR_IP))
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, advertised)
    try:
        _configure(softswitch, CUSTOMER_IP, VENDOR_IP, vendor_port)

        def media(answer_sdp: str) -> None:
            # The vendor's RTP comes from another port than its SDP says (a NAT, say).
            actual.send(vendor.offered(), 5, first_seq=1001)
            caller_rtp.send(media_address(answer_sdp), PACKETS)

        result = place_call(CUSTOMER_IP, ("127.0.0.1", softswitch.sip_port), "4420001",
                            offer=sdp(CUSTOMER_IP, caller_rtp.port), on_answer=media,
                            hold=0.5)
        assert result.final == 200
        assert wait_until(lambda: len(actual.received) >= PACKETS, timeout=3)
    finally:
        vendor.close()
        caller_rtp.close()
        advertised.close()
        actual.close()
    assert actual.payloads() == [payload_of(s) for s in range(1, PACKETS + 1)]
    assert advertised.received == []


@pytest.mark.parametrize(("check", "silent_side", "reason"), [
    ("from_remote", "vendor", "callee from_remote"),
    ("to_remote", "caller", "callee to_remote"),
])
def test_rtp_interruption_hangs_up(softswitch: Softswitch, check: str, silent_side: str,
                                   reason: str) -> None:
    """The vendor's gateway checks one direction; only the other direction has RTP."""
    vendor_port = free_port(VENDOR_IP)
    caller_rtp, vendor_rtp = RtpEndpoint(CUSTOMER_IP), RtpEndpoint(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp)
    api = softswitch.api
    try:
        api.put("/api/v1/parameters/SS_MEDIA_CHECK_TIMEOUT", {"value": 5})
        api.put("/api/v1/parameters/SS_MEDIAPROXYMODE", {"value": "On"})
        api.post("/api/v1/mapping-gateways", {"name": "in", "ips": [CUSTOMER_IP]})
        api.post("/api/v1/routing-gateways", {"name": "out", "host": VENDOR_IP,
                                              "port": vendor_port, "media_check": check})
        assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1,
                          timeout=2)

        def media(answer_sdp: str) -> None:
            # Only the side that is not silent talks, for 8 s (the timeout is 5 s).
            for _ in range(40):
                if silent_side == "vendor":
                    caller_rtp.send(media_address(answer_sdp), 1)
                else:
                    vendor_rtp.send(vendor.offered(), 1)
                time.sleep(0.2)

        started = time.monotonic()
        result = place_call(CUSTOMER_IP, ("127.0.0.1", softswitch.sip_port), "4420001",
                            offer=sdp(CUSTOMER_IP, caller_rtp.port), on_answer=media,
                            hold=0.1, timeout=30)
        assert result.final == 200
        cdrs = wait_until(lambda: api.get("/api/v1/cdrs")["items"], timeout=5)
        assert cdrs
        (cdr,) = cdrs
        assert cdr["termination_reason"] == f"RTP interruption ({reason})"
        assert 4.5 <= cdr["duration"] <= 7.5
        assert vendor.byes == 1
        assert time.monotonic() - started < 15
    finally:
        vendor.close()
        caller_rtp.close()
        vendor_rtp.close()


def test_relay_ports_come_back_after_many_calls(tmp_path: Path, softswitch: Softswitch
                                                ) -> None:
    from sippctl import sipp

    vendor_port = free_port(VENDOR_IP)
    api = softswitch.api
    api.put("/api/v1/parameters/SS_MEDIAPROXYMODE", {"value": "On"})
    api.post("/api/v1/mapping-gateways", {"name": "in", "ips": [CUSTOMER_IP]})
    api.post("/api/v1/routing-gateways", {"name": "out", "host": VENDOR_IP,
                                          "port": vendor_port})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)
    calls = 300
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port, calls=calls)
    caller = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                  f"127.0.0.1:{softswitch.sip_port}", calls=calls, rate=100, hold_ms=200)
    try:
        assert caller.wait(60) == 0, caller.output()
        assert vendor.wait(60) == 0
    finally:
        caller.stop()
        vendor.stop()
    assert wait_until(lambda: api.get("/api/v1/stats")["counters"]["media_ports_in_use"] == 0,
                      timeout=5), api.get("/api/v1/stats")
    cdrs = wait_until(lambda: len(api.get("/api/v1/cdrs?limit=1000")["items"]) == calls,
                      timeout=5)
    assert cdrs
    items = api.get("/api/v1/cdrs?limit=1000")["items"]
    assert all(json.loads(c["media"])["relayed"] for c in items)


def test_session_timer_refreshes_and_a_dead_dialog_ends_the_call(softswitch: Softswitch
                                                                 ) -> None:
    """TTL 90 s, refresh at TTL/10 = 9 s: the first UPDATE is answered, the second gets
    481 (the vendor lost the dialog): the call ends with its CDR."""
    vendor_port = free_port(VENDOR_IP)
    caller_rtp, vendor_rtp = RtpEndpoint(CUSTOMER_IP), RtpEndpoint(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp, session_timer=90,
                             update_codes=[200, 481])
    api = softswitch.api
    try:
        api.put("/api/v1/parameters/SS_SIP_SESSION_TTL", {"value": 90})
        api.put("/api/v1/parameters/SS_SIP_SESSION_UPDATE_SEGMENT", {"value": 10})
        _configure(softswitch, CUSTOMER_IP, VENDOR_IP, vendor_port, relay="Off")
        started = time.monotonic()
        result = place_call(CUSTOMER_IP, ("127.0.0.1", softswitch.sip_port), "4420001",
                            offer=sdp(CUSTOMER_IP, caller_rtp.port), hold=25, timeout=40)
        assert result.final == 200
        cdrs = wait_until(lambda: api.get("/api/v1/cdrs")["items"], timeout=5)
        assert cdrs
    finally:
        vendor.close()
        caller_rtp.close()
        vendor_rtp.close()
    assert "Session-Expires: 90;refresher=uac" in vendor.invite
    assert "Supported: timer" in vendor.invite
    assert [round(t - started) for t in vendor.updates] in ([9, 18], [9, 19], [10, 19])
    (cdr,) = cdrs
    assert cdr["termination_reason"] == "session refresh failed (callee 481)"
    assert 17 <= cdr["duration"] <= 21
