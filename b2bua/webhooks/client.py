"""A small HTTP/1.1 client for the webhooks' POSTs: one request at a time over a kept-alive
connection (TLS with the system's certificates and the host's name checked for https).

Why not ``http.client``: it costs some 130 µs of CPU per request here, most of it parsing
the answer's headers with ``email.parser``, against 35 µs for this one, and the delivery
thread shares the interpreter lock with the engine's event loop. All it needs of an answer
is its status and where it ends, so that the connection can carry the next request:
``Content-Length``, ``Transfer-Encoding: chunked``, or the connection's close; an answer it
does not understand ends the connection, never the delivery's outcome (a 2xx is a 2xx).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import urllib.parse
from typing import BinaryIO

LINE_MAX = 8192
HEADERS_MAX = 100
INTERIM_MAX = 10
BODY_MAX = 64 << 10  # an answer's body read at most; a longer one ends the connection


class HttpError(OSError):
    """An answer that is not HTTP, or cut short."""


class Target:
    """Where a webhook's URL points: host, port, TLS, and the request target."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:  # an international name as the Host header has it
            host = self.host.encode("idna").decode("ascii")
        except UnicodeError:
            host = self.host
        host = f"[{host}]" if ":" in host else host
        default = (self.port == 443) if self.tls else (self.port == 80)
        self.authority = host if default else f"{host}:{self.port}"


class Connection:
    """One kept-alive connection to a target; ``post`` opens it when it is not open."""

    def __init__(self, target: Target, tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self._tls = tls
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None

    @property
    def open(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        sock, self._sock, self._reader = self._sock, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def post(self, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """Send ``body``; the answer's status. OSError (HttpError, TimeoutError...) when
        there is none; the connection is then closed."""
        head = [f"POST {self.target.path} HTTP/1.1", f"Host: {self.target.authority}",
                *(f"{k}: {v}" for k, v in headers.items()),
                f"Content-Length: {len(body)}", "", ""]
        request = "\r\n".join(head).encode("latin-1") + body
        try:
            if self._sock is None:
                self._connect(timeout)
            assert self._sock is not None and self._reader is not None
            self._sock.settimeout(timeout)
            self._sock.sendall(request)
            status, keep = self._answer(self._reader)
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        return status

    def _connect(self, timeout: float) -> None:
        target = self.target
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.tls:
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                sock = self._tls.wrap_socket(sock, server_hostname=target.host)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader = sock.makefile("rb")

    def _answer(self, reader: BinaryIO) -> tuple[int, bool]:
        """The final answer's status, and whether the connection may carry another
        request (its body read to its end)."""
        for _ in range(INTERIM_MAX):  # 1xx interim answers (100 Continue) are skipped
            version, status = _status_line(_line(reader))
            headers = _headers(reader)
            if status >= 200 or status == 101:
                break
        else:
            raise HttpError("no final answer")
        connection = headers.get("connection", "").lower()
        keep = ("close" not in connection) if version == "HTTP/1.1" else \
            ("keep-alive" in connection)
        if status == 101:  # switching protocols: not for a POST of ours
            return status, False
        try:
            return status, keep and _skip_body(reader, status, headers)
        except (OSError, ValueError):  # the status stands; the connection ends
            return status, False


def _skip_body(reader: BinaryIO, status: int, headers: dict[str, str]) -> bool:
    """Read the answer's body to its end; False when the connection cannot carry another
    request (a body without a length, too long, malformed)."""
    if status in (204, 304):
        return True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _skip_chunked(reader)
    length = headers.get("content-length")
    if length is None:
        return False  # it ends when the connection does: not waited for
    size = int(length)
    if size < 0 or size > BODY_MAX:
        return False
    return len(reader.read(size)) == size


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(LINE_MAX + 1)
    if not line:
        raise HttpError("connection closed before an answer")
    if len(line) > LINE_MAX:
        raise HttpError("answer line too long")
    return line


def _status_line(line: bytes) -> tuple[str, int]:
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or \
            len(parts[1]) != 3:
        raise HttpError(f"not an HTTP answer: {line[:60]!r}")
    return parts[0], int(parts[1])


def _headers(reader: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(HEADERS_MAX):
        line = _line(reader)
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise HttpError("too many header lines")


def _skip_chunked(reader: BinaryIO) -> bool:
    """Read a chunked body to its end; False when it is too long or malformed (then the
    connection is not reused)."""
    total = 0
    while True:
        size_text = _line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return False
        if size == 0:
            break
        total += size
        if total > BODY_MAX or len(reader.read(size)) != size or \
                reader.read(2) != b"\r\n":
            return False
    # Trailers, then the empty line.
    return any(_line(reader) in (b"\r\n", b"\n") for _ in range(HEADERS_MAX))
