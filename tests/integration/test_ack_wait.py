"""The 200 OK toward the caller until its ACK (RFC 3261 13.3.1.4): retransmitted with
doubling intervals, and a caller that never ACKs is hung up after 64*T1 (32 s). (An ACK
stops both timers, so an ended call is freed at once: tests/integration/test_memory.py.)"""

from __future__ import annotations

import itertools
import secrets
import socket
import time
from pathlib import Path

from rtppeer import AnsweringVendor, RtpEndpoint
from sippctl import CUSTOMER_IP, VENDOR_IP
from support import Softswitch, free_port, ip_trunks, wait_until
from udppeer import response


def _invite(src_ip: str, port: int, switch: tuple[str, int]) -> bytes:
    call_id = f"{secrets.token_hex(8)}@{src_ip}"
    lines = [
        f"INVITE sip:4420001@{switch[0]}:{switch[1]} SIP/2.0",
        f"Via: SIP/2.0/UDP {src_ip}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
        f"From: <sip:1001@{src_ip}>;tag={secrets.token_hex(4)}",
        f"To: <sip:4420001@{switch[0]}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:1001@{src_ip}:{port}>",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_unacknowledged_answer_is_retransmitted_then_hung_up(tmp_path: Path,
                                                              softswitch: Softswitch) -> None:
    vendor_rtp = RtpEndpoint(VENDOR_IP)
    vendor_port = free_port(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((CUSTOMER_IP, 0))
    sock.settimeout(0.2)
    switch = ("127.0.0.1", softswitch.sip_port)
    try:
        ip_trunks(softswitch, CUSTOMER_IP, VENDOR_IP, vendor_port)
        sock.sendto(_invite(CUSTOMER_IP, sock.getsockname()[1], switch), switch)
        oks: list[float] = []
        bye, bye_at = "", 0.0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not bye:
            try:
                data = sock.recv(65535).decode(errors="replace")
            except TimeoutError:
                continue
            if data.startswith("SIP/2.0 200"):
                oks.append(time.monotonic())
            elif data.startswith("BYE "):
                bye, bye_at = data, time.monotonic()
                sock.sendto(response(data, 200, "OK"), switch)
        assert bye, f"no BYE after {len(oks)} copies of the 200"
        # Sent, then again after 0.5, 1, 2, 4, 4 ... s (T1 doubling up to T2) until 32 s.
        gaps = [b - a for a, b in itertools.pairwise(oks)]
        assert len(oks) >= 8, gaps
        assert 0.3 < gaps[0] < 0.8 and 0.8 < gaps[1] < 1.4 and 1.7 < gaps[2] < 2.5, gaps
        assert 30 <= bye_at - oks[0] <= 36
        assert wait_until(lambda: vendor.byes >= 1, timeout=3)
        cdr = softswitch.api.get("/api/v1/cdrs")["items"][0]
        assert cdr["termination_reason"] == "no ACK from caller"
        assert cdr["hangup_by"] == "system"
    finally:
        sock.close()
        vendor.close()
        vendor_rtp.close()
