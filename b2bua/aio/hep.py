"""HEP export: a copy of every SIP message the transports send and receive, as HEP3
(``b2bua/sip/hep.py``) to a Homer or sngrep collector (``SS_HEP_DESTINATION``).

One non-blocking UDP socket; a copy that cannot be sent (the buffer full, the collector
unreachable) is counted and lost, never waited for: the capture must not slow calls."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from b2bua.sip import hep
from b2bua.sip.peek import call_id_of

log = logging.getLogger("b2bua.aio.hep")


@dataclass
class HepStats:
    sent: int = 0
    errors: int = 0  # not sent: the socket refused (buffer full, ICMP error)
    skipped: int = 0  # not encodable: addresses that are not IPs of one family


class HepSender:
    """The transports' tap (``UdpTransport.tap``, ``TcpTransport.tap``) while on."""

    def __init__(self) -> None:
        self.local: tuple[str, int] = ("127.0.0.1", 5060)  # the SIP socket's address
        self.capture_id = 1
        self.password = b""
        self.destination: tuple[str, int] | None = None
        self.stats = HepStats()
        self._sock: socket.socket | None = None

    @property
    def on(self) -> bool:
        return self._sock is not None

    def configure(self, destination: str, capture_id: int, password: str) -> None:
        """Apply the parameters; an empty destination turns the export off."""
        self.capture_id = capture_id
        self.password = password.encode()
        try:
            target = hep.parse_destination(destination)
        except ValueError:
            target = None  # the registry refuses such a value
        if target == self.destination:
            return
        self.close()
        self.destination = target
        if target is None:
            return
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        self._sock = sock
        log.info("HEP export to %s:%d", *target)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def tap(self, sent: bool, data: bytes, transport: str, host: str, port: int) -> None:
        sock, destination = self._sock, self.destination
        if sock is None or destination is None or not _looks_sip(data):
            return  # off, or a NAT keep-alive (CRLF, SS_SIP_NAT_KEEP_ALIVE_MESSAGE)
        remote = (host, port)
        src, dst = (self.local, remote) if sent else (remote, self.local)
        call_id = call_id_of(data)
        try:
            packet = hep.encode(data, src, dst, tcp=transport == "tcp", at=time.time(),
                                capture_id=self.capture_id, password=self.password,
                                correlation=call_id.encode("utf-8", "surrogateescape")
                                if call_id else b"")
        except ValueError:
            self.stats.skipped += 1
            return
        try:
            sock.sendto(packet, destination)
        except OSError:
            self.stats.errors += 1
            return
        self.stats.sent += 1

    def snapshot(self) -> dict[str, Any]:
        return {**asdict(self.stats), "on": self.on}


def _looks_sip(data: bytes) -> bool:
    """A request or status line first (of any SIP version: a message the parser refuses
    is still worth seeing in Homer), not a keep-alive's text."""
    end = data.find(b"\r\n", 0, 512)
    return end > 0 and (data.startswith(b"SIP/") or b" SIP/" in data[:end])
