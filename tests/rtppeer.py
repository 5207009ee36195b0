"""RTP endpoints for media tests, and a vendor that answers with SDP over UDP."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

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


class AnsweringVendor:
    """Answers an INVITE with 200 and its own SDP; records the INVITE; answers BYE."""

    def __init__(self, ip: str, port: int, media: RtpEndpoint,
                 session_timer: int | None = None, update_codes: list[int] | None = None
                 ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.05)
        self.ip = ip
        self.media = media
        self.invite = ""
        self.byes = 0
        self.session_timer = session_timer
        self.update_codes = list(update_codes or [])  # answers to UPDATEs, in order
        self.updates: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            text = data.decode(errors="replace")
            method = text.split(" ", 1)[0]
            if method not in ("INVITE", "BYE", "UPDATE"):
                continue
            lines = text.split("\r\n")
            keep = [ln for ln in lines if ln.split(":", 1)[0].lower()
                    in ("via", "from", "call-id", "cseq")]
            to = next(ln for ln in lines if ln.lower().startswith("to:"))
            if method == "INVITE":
                self.invite = text
                body = sdp(self.ip, self.media.port)
                timer = [f"Session-Expires: {self.session_timer};refresher=uac",
                         "Require: timer"] if self.session_timer else []
                reply = ["SIP/2.0 200 OK", *keep, to + ";tag=v1",
                         f"Contact: <sip:vendor@{self.ip}:{self.sock.getsockname()[1]}>",
                         "Allow: INVITE, ACK, BYE, CANCEL, UPDATE", *timer,
                         "Content-Type: application/sdp", f"Content-Length: {len(body)}",
                         "", body]
            elif method == "UPDATE":
                self.updates.append(time.monotonic())
                code = self.update_codes.pop(0) if self.update_codes else 200
                reason = "OK" if code == 200 else "Call/Transaction Does Not Exist"
                reply = [f"SIP/2.0 {code} {reason}", *keep, to, "Content-Length: 0", "", ""]
            else:
                self.byes += 1
                reply = ["SIP/2.0 200 OK", *keep, to, "Content-Length: 0", "", ""]
            self.sock.sendto("\r\n".join(reply).encode(), addr)

    def offered(self) -> tuple[str, int]:
        return media_address(self.invite.split("\r\n\r\n", 1)[1])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class EarlyMediaVendor:
    """183 with SDP, RTP toward the offered address, then a final 503 after ``delay``."""

    def __init__(self, ip: str, port: int, media: RtpEndpoint, delay: float = 0.6,
                 send_rtp: bool = True) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.05)
        self.ip, self.media, self.delay, self.send_rtp = ip, media, delay, send_rtp
        self.invites = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            text = data.decode(errors="replace")
            if not text.startswith("INVITE ") or self.invites:
                continue
            self.invites += 1
            lines = text.split("\r\n")
            keep = [ln for ln in lines if ln.split(":", 1)[0].lower()
                    in ("via", "from", "call-id", "cseq")]
            to = next(ln for ln in lines if ln.lower().startswith("to:")) + ";tag=em1"
            body = sdp(self.ip, self.media.port)
            progress = ["SIP/2.0 183 Session Progress", *keep, to,
                        f"Contact: <sip:vendor@{self.ip}:{self.sock.getsockname()[1]}>",
                        "Content-Type: application/sdp", f"Content-Length: {len(body)}",
                        "", body]
            self.sock.sendto("\r\n".join(progress).encode(), addr)
            if self.send_rtp:
                self.media.send(media_address(text.split("\r\n\r\n", 1)[1]), 10)
            time.sleep(self.delay)
            final = ["SIP/2.0 503 Service Unavailable", *keep, to, "Content-Length: 0", "",
                     ""]
            self.sock.sendto("\r\n".join(final).encode(), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
