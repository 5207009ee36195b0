"""A UDP SIP peer on its own thread, and the header copying every test responder needs."""

from __future__ import annotations

import socket
import threading

COPIED = ("via", "from", "call-id", "cseq")


def response_head(request: str, status: int, reason: str, to_tag: str | None = None
                  ) -> list[str]:
    """Status line, Via/From/Call-ID/CSeq copied, and To (with ``to_tag`` if given)."""
    lines = request.split("\r\n")
    kept = [ln for ln in lines if ln.split(":", 1)[0].strip().lower() in COPIED]
    to = next(ln for ln in lines if ln.lower().startswith("to:"))
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    return [f"SIP/2.0 {status} {reason}", *kept, to]


def response(request: str, status: int, reason: str, *, to_tag: str | None = None,
             headers: list[str] | None = None, body: str = "") -> bytes:
    lines = response_head(request, status, reason, to_tag) + list(headers or [])
    if body:
        lines.append("Content-Type: application/sdp")
    lines += [f"Content-Length: {len(body)}", "", body]
    return "\r\n".join(lines).encode()


class UdpPeer:
    """Calls ``handle(text, addr)`` for every datagram until ``close``."""

    def __init__(self, ip: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.05)
        self.ip = ip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.handle(data.decode(errors="replace"), addr)

    def handle(self, text: str, addr: tuple[str, int]) -> None:
        """Subclasses answer here; the base peer ignores everything."""

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
