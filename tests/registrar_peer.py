"""A vendor's registrar on a UDP socket: challenges, checks digest credentials with its
own MD5 arithmetic (independent of the softswitch's), and records every REGISTER."""

from __future__ import annotations

import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _header(lines: list[str], name: str) -> str:
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def _params(value: str) -> dict[str, str]:
    out = {}
    for part in value.removeprefix("Digest").split(","):
        key, _, val = part.strip().partition("=")
        out[key.strip().lower()] = val.strip().strip('"')
    return out


@dataclass
class Seen:
    at: float
    cseq: int
    call_id: str
    expires: int
    authorized: bool
    answered: int


@dataclass
class RegistrarPeer:
    ip: str
    port: int
    username: str
    password: str
    realm: str = "vendor.test"
    code: int = 401  # 401 (WWW-Authenticate) or 407 (Proxy-Authenticate)
    grant: int | None = None  # expiry granted; None: as asked
    fail_first: int = 0  # answer the first N REGISTERs with 503
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, self.port))
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            if data.startswith(b"REGISTER "):
                self.sock.sendto(self._answer(data.decode()), addr)

    def _answer(self, text: str) -> bytes:
        lines = text.split("\r\n")
        uri = lines[0].split(" ")[1]
        cseq = int(_header(lines, "CSeq").split()[0])
        expires = int(_header(lines, "Expires") or "3600")
        auth_name = "Authorization" if self.code == 401 else "Proxy-Authorization"
        auth = _header(lines, auth_name)
        authorized = False
        if auth:
            p = _params(auth)
            ha1 = _md5(f"{p.get('username')}:{p.get('realm')}:{self.password}")
            ha2 = _md5(f"REGISTER:{p.get('uri')}")
            expected = _md5(f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:"
                            f"{p.get('qop')}:{ha2}")
            authorized = (p.get("username") == self.username and p.get("uri") == uri
                          and p.get("response") == expected)
        if len(self.seen) < self.fail_first:
            status, extra = 503, []
        elif not auth:
            header = "WWW-Authenticate" if self.code == 401 else "Proxy-Authenticate"
            nonce = secrets.token_hex(12)
            status = self.code
            extra = [f'{header}: Digest realm="{self.realm}", nonce="{nonce}", '
                     'algorithm=MD5, qop="auth"']
        elif authorized:
            granted = expires if self.grant is None or expires == 0 else self.grant
            status = 200
            contact = _header(lines, "Contact")
            extra = [f"Contact: {contact};expires={granted}"] if granted else []
        else:
            status, extra = 403, []
        self.seen.append(Seen(time.monotonic(), cseq, _header(lines, "Call-ID"), expires,
                              authorized, status))
        reason = {200: "OK", 401: "Unauthorized", 407: "Proxy Authentication Required",
                  403: "Forbidden", 503: "Service Unavailable"}[status]
        copy = [line for line in lines if line.split(":", 1)[0].strip().lower()
                in ("via", "from", "call-id", "cseq")]
        to = _header(lines, "To") + ";tag=reg1"
        reply = [f"SIP/2.0 {status} {reason}", *copy, f"To: {to}", *extra,
                 "Content-Length: 0", "", ""]
        return "\r\n".join(reply).encode()
