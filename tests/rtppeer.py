"""RTP endpoints for media tests, and a vendor that answers with SDP over UDP."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from udppeer import UdpPeer, response

HEADER = struct.Struct("!BBHII")


def rtp_packet(seq: int, payload: bytes, ssrc: int = 0x1234ABCD, pt: int = 0) -> bytes:
    return HEADER.pack(0x80, pt, seq & 0xFFFF, seq * 160, ssrc) + payload


def payload_of(seq: int, size: int = 160) -> bytes:
    """A G.711-sized payload that differs per packet."""
    return bytes((seq * 7 + i) & 0xFF for i in range(size))


def sdp(ip: str, port: int) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def media_address(body: str) -> tuple[str, int]:
    ip = re.search(r"c=IN IP4 ([0-9.]+)", body)
    port = re.search(r"m=audio (\d+)", body)
    assert ip and port, body
    return ip.group(1), int(port.group(1))


@dataclass
class RtpEndpoint:
    """A UDP socket that sends numbered RTP packets and records what it receives."""

    ip: str
    port: int = 0
    received: list[tuple[tuple[str, int], bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, self.port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            self.received.append((addr, data))

    def send(self, dst: tuple[str, int], count: int, first_seq: int = 1,
             interval: float = 0.002) -> list[bytes]:
        sent = []
        for seq in range(first_seq, first_seq + count):
            packet = rtp_packet(seq, payload_of(seq))
            self.sock.sendto(packet, dst)
            sent.append(packet)
            time.sleep(interval)
        return sent

    def payloads(self) -> list[bytes]:
        return [data[12:] for _, data in self.received]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class AnsweringVendor(UdpPeer):
    """Answers an INVITE with 200 and its own SDP; records the INVITE; answers BYE and
    UPDATE (with ``update_codes`` in order, then 200)."""

    def __init__(self, ip: str, port: int, media: RtpEndpoint,
                 session_timer: int | None = None, update_codes: list[int] | None = None
                 ) -> None:
        self.media = media
        self.invite = ""
        self.byes = 0
        self.session_timer = session_timer
        self.update_codes = list(update_codes or [])
        self.updates: list[float] = []
        super().__init__(ip, port)

    def handle(self, text: str, addr: tuple[str, int]) -> None:
        method = text.split(" ", 1)[0]
        if method == "INVITE":
            self.invite = text
            timer = [f"Session-Expires: {self.session_timer};refresher=uac",
                     "Require: timer"] if self.session_timer else []
            reply = response(text, 200, "OK", to_tag="v1", headers=[
                f"Contact: <sip:vendor@{self.ip}:{self.sock.getsockname()[1]}>",
                "Allow: INVITE, ACK, BYE, CANCEL, UPDATE", *timer],
                body=sdp(self.ip, self.media.port))
        elif method == "UPDATE":
            self.updates.append(time.monotonic())
            code = self.update_codes.pop(0) if self.update_codes else 200
            reply = response(text, code, "OK" if code == 200 else "Dialog Gone")
        elif method == "BYE":
            self.byes += 1
            reply = response(text, 200, "OK")
        else:
            return
        self.sock.sendto(reply, addr)

    def offered(self) -> tuple[str, int]:
        return media_address(self.invite.split("\r\n\r\n", 1)[1])


class EarlyMediaVendor(UdpPeer):
    """183 with SDP, RTP toward the offered address, then a final 503 after ``delay``."""

    def __init__(self, ip: str, port: int, media: RtpEndpoint, delay: float = 0.6,
                 send_rtp: bool = True) -> None:
        self.media, self.delay, self.send_rtp = media, delay, send_rtp
        self.invites = 0
        super().__init__(ip, port)

    def handle(self, text: str, addr: tuple[str, int]) -> None:
        if not text.startswith("INVITE ") or self.invites:
            return
        self.invites += 1
        contact = f"Contact: <sip:vendor@{self.ip}:{self.sock.getsockname()[1]}>"
        self.sock.sendto(response(text, 183, "Session Progress", to_tag="em1",
                                  headers=[contact], body=sdp(self.ip, self.media.port)),
                         addr)
        if self.send_rtp:
            self.media.send(media_address(text.split("\r\n\r\n", 1)[1]), 10)
        time.sleep(self.delay)
        self.sock.sendto(response(text, 503, "Service Unavailable", to_tag="em1"), addr)
