"""Hand-built SIP requests over a raw UDP socket, for probing single responses."""

from __future__ import annotations

import secrets
import socket
import time


def request(method: str, target_host: str, target_port: int, src_ip: str, src_port: int, *,
            user: str = "200", body: str = "", extra: str = "", to_tag: str | None = None,
            call_id: str | None = None, max_forwards: int = 70,
            from_user: str = "probe") -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(6)
    tag = secrets.token_hex(4)
    to = f"<sip:{user}@{target_host}:{target_port}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:{user}@{target_host}:{target_port} SIP/2.0",
        f"Via: SIP/2.0/UDP {src_ip}:{src_port};branch={branch};rport",
        f"From: <sip:{from_user}@{src_ip}>;tag={tag}",
        f"To: {to}",
        f"Call-ID: {call_id or secrets.token_hex(8)}@{src_ip}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:probe@{src_ip}:{src_port}>",
        f"Max-Forwards: {max_forwards}",
    ]
    if extra:
        lines.append(extra.rstrip("\r\n"))
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def exchange(data: bytes, src_ip: str, dst: tuple[str, int], wait: float = 1.0,
             src_port: int = 0) -> tuple[list[bytes], int]:
    """Send one datagram from ``src_ip`` and collect whatever comes back within ``wait``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((src_ip, src_port))
        port = int(sock.getsockname()[1])
        sock.sendto(data, dst)
        replies: list[bytes] = []
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            try:
                replies.append(sock.recv(65535))
            except TimeoutError:
                break
        return replies, port


def status_codes(replies: list[bytes]) -> list[int]:
    return [int(r.split(b" ", 2)[1]) for r in replies if r.startswith(b"SIP/2.0 ")]


def probe(method: str, switch_port: int, src_ip: str, wait: float = 1.0, **kw: object
          ) -> list[int]:
    """Send ``method`` from ``src_ip`` to the softswitch; the distinct status codes heard,
    in order (a final response retransmitted because nobody ACKs counts once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((src_ip, 0))
        port = int(sock.getsockname()[1])
    data = request(method, "127.0.0.1", switch_port, src_ip, port, **kw)  # type: ignore[arg-type]
    replies, _ = exchange(data, src_ip, ("127.0.0.1", switch_port), wait, src_port=port)
    return list(dict.fromkeys(status_codes(replies)))
