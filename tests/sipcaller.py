"""A small UDP caller for failover tests: INVITE, collect every response, ACK the final.

sipp scenarios must name the final code they expect; a failover test needs to see
whichever code the softswitch chose, so this caller records them all.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from udppeer import UdpPeer, response

SDP = ("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0\r\n")


@dataclass
class CallResult:
    codes: list[int] = field(default_factory=list)
    final: int | None = None
    final_at: float | None = None
    started: float = 0.0
    final_message: bytes = b""

    def header(self, name: str) -> str:
        """A header of the final response ("" when absent)."""
        return _header(self.final_message, name.encode())

    @property
    def provisional(self) -> list[int]:
        return [c for c in self.codes if c < 200]


def place_call(src_ip: str, switch: tuple[str, int], callee: str, *, timeout: float = 20.0,
               hold: float = 0.3, cancel_after: float | None = None,
               caller: str = "1001", offer: str | None = None,
               on_answer: Callable[[str], None] | None = None) -> CallResult:
    """Call ``callee``; hang up after ``hold`` if answered, CANCEL after ``cancel_after``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((src_ip, 0))
    port = sock.getsockname()[1]
    call_id = f"{secrets.token_hex(8)}@{src_ip}"
    tag = secrets.token_hex(4)
    branch = "z9hG4bK" + secrets.token_hex(8)
    ruri = f"sip:{callee}@{switch[0]}:{switch[1]}"
    body = offer if offer is not None else SDP.format(ip=src_ip)

    def request(method: str, cseq: int, to_tag: str | None = None, req_branch: str = "",
                content: str = "", uri: str = ruri) -> bytes:
        to = f"<sip:{callee}@{switch[0]}>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {src_ip}:{port};branch={req_branch or branch};rport",
            f"From: <sip:{caller}@{src_ip}>;tag={tag}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{caller}@{src_ip}:{port}>",
            "Max-Forwards: 70",
        ]
        if content:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(content)}")
        return ("\r\n".join(lines) + "\r\n\r\n" + content).encode()

    result = CallResult(started=time.monotonic())
    invite = request("INVITE", 1, content=body)
    sock.sendto(invite, switch)
    deadline = time.monotonic() + timeout
    next_resend = time.monotonic() + 0.5
    cancelled = False
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if cancel_after is not None and not cancelled and now - result.started >= \
                    cancel_after:
                sock.sendto(request("CANCEL", 1), switch)
                cancelled = True
            if not result.codes and now >= next_resend:
                sock.sendto(invite, switch)
                next_resend = now + 0.5
            sock.settimeout(0.05)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            status = int(data.split(b" ", 2)[1])
            cseq_method = _header(data, b"CSeq").split()[-1]
            if cseq_method != "INVITE":
                continue
            if status >= 200 and result.final is not None:
                continue  # a retransmitted final response
            result.codes.append(status)
            if status < 200:
                continue
            result.final = status
            result.final_at = time.monotonic()
            result.final_message = data
            to_tag = _header(data, b"To").partition(";tag=")[2].split(";")[0] or None
            if status >= 300:
                sock.sendto(request("ACK", 1, to_tag), switch)
                return result
            contact = _header(data, b"Contact").strip("<>").split(">")[0]
            ack_branch = "z9hG4bK" + secrets.token_hex(8)
            sock.sendto(request("ACK", 1, to_tag, ack_branch, uri=contact), switch)
            if on_answer is not None:
                on_answer(data.decode(errors="replace").split("\r\n\r\n", 1)[1])
            time.sleep(hold)
            bye_branch = "z9hG4bK" + secrets.token_hex(8)
            sock.sendto(request("BYE", 2, to_tag, bye_branch, uri=contact), switch)
            return result
        return result
    finally:
        sock.close()


def _header(data: bytes, name: bytes) -> str:
    for line in data.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip().decode()
    return ""


class SilentVendor:
    """A vendor that receives INVITEs and never answers; notes when each arrived."""

    def __init__(self, ip: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.05)
        self.arrivals: list[tuple[float, bytes]] = []

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.arrivals.append((time.monotonic(), self.sock.recv(65535)))
            except TimeoutError:
                continue

    def invites(self) -> list[float]:
        return [t for t, data in self.arrivals if data.startswith(b"INVITE ")]

    def close(self) -> None:
        self.sock.close()


class RecordingVendor(UdpPeer):
    """A vendor that records each INVITE and refuses it with 486 (ACK absorbed)."""

    def __init__(self, ip: str, port: int) -> None:
        self.invites: list[str] = []
        super().__init__(ip, port)

    def handle(self, text: str, addr: tuple[str, int]) -> None:
        if not text.startswith("INVITE "):
            return
        if text not in self.invites:
            self.invites.append(text)
        self.sock.sendto(response(text, 486, "Busy Here", to_tag="rec1"), addr)

    def header(self, name: str, index: int = 0) -> str:
        return _header(self.invites[index].encode(), name.encode())

    def request_uri(self, index: int = 0) -> str:
        return self.invites[index].split(" ", 2)[1]
