"""Wire bytes -> :class:`Request`/:class:`Response`, and TCP stream framing.

The parser does the minimum every message needs (start line, header split, the checks RFC 3261
makes mandatory before a transaction can be matched) and leaves structured header parsing to
the lazy views on the message, because most headers are only ever relayed.
"""

from __future__ import annotations

import re

from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import CSeq, canonical_name
from b2bua.sip.message import Request, Response

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_VALUE",
    "MAX_MESSAGE_SIZE",
    "StreamFramer",
    "find_header_end",
    "parse_message",
]

MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 256
MAX_HEADER_VALUE = 8192

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_REQUEST_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"]+")
_STREAM_LENGTH_RE = re.compile(rb"\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)

_MANDATORY = frozenset({"Via", "From", "To", "Call-ID", "CSeq"})
_SINGLE = frozenset({"From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards"})
_TRACKED = _MANDATORY | _SINGLE

# Raw header name as seen on the wire -> canonical name, only for names that passed the token
# check; bounded so invented names cannot grow it without limit.
_NAMES: dict[str, str] = {}
_NAMES_LIMIT = 4096


def _check_name(raw: str) -> str:
    name = raw.strip(" \t")
    if _TOKEN_RE.fullmatch(name) is None:
        raise SipParseError("bad header name")
    canon = canonical_name(name)
    if len(_NAMES) < _NAMES_LIMIT:
        _NAMES[raw] = canon
    return canon


def find_header_end(buf: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Locate the blank line ending the header section.

    Returns ``(end of header text, start of body)`` or ``(-1, -1)``. CRLF is the fast path;
    bare LF and mixed endings are accepted too, the earliest blank line winning.
    """
    crlf = buf.find(b"\r\n\r\n", start)
    limit = crlf + 2 if crlf != -1 else len(buf)
    lflf = buf.find(b"\n\n", start, limit)
    mixed = buf.find(b"\n\r\n", start, limit)
    if lflf == -1 and mixed == -1:
        return (crlf, crlf + 4) if crlf != -1 else (-1, -1)
    best = (-1, -1)
    if lflf != -1:
        # "\r\n\n" ends a CRLF line with a bare-LF blank line: the CR belongs to the terminator.
        end = lflf - 1 if lflf > start and buf[lflf - 1] == 0x0D else lflf
        best = (end, lflf + 2)
    if mixed != -1 and (best[0] == -1 or mixed < best[0]):
        best = (mixed, mixed + 3)
    return best


def _split_lines(head: str) -> list[str]:
    lines = head.split("\r\n")
    breaks = len(lines) - 1
    if head.count("\n") == breaks and head.count("\r") == breaks:
        return lines
    text = head.replace("\r\n", "\n")
    if "\r" in text:
        # A lone CR is a line break to some peers: relaying it would allow header injection.
        raise SipParseError("bare CR in header section")
    return text.split("\n")


def _parse_headers(lines: list[str]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    append = headers.append
    names = _NAMES
    for index in range(1, len(lines)):
        line = lines[index]
        first = line[:1]
        if first == " " or first == "\t":
            if not headers:
                raise SipParseError("continuation line before first header")
            name, value = headers[-1]
            more = line.strip(" \t")
            value = f"{value} {more}" if value else more
            if len(value) > MAX_HEADER_VALUE:
                raise SipParseError("header value too long")
            headers[-1] = (name, value.strip(" \t"))
            continue
        raw, sep, value = line.partition(":")
        if not sep:
            raise SipParseError("header line without colon")
        canon = names.get(raw)
        if canon is None:
            canon = _check_name(raw)
        value = value.strip(" \t")
        if len(value) > MAX_HEADER_VALUE:
            raise SipParseError("header value too long")
        append((canon, value))
    if len(headers) > MAX_HEADERS:
        raise SipParseError("too many headers")
    return headers


def _body_length(value: str, available: int) -> int:
    if not (value.isascii() and value.isdigit()):
        raise SipParseError("bad Content-Length")
    digits = value.lstrip("0")
    if len(digits) > 9:
        raise SipParseError("Content-Length exceeds message")
    length = int(digits or "0")
    if length > available:
        raise SipParseError("Content-Length exceeds message")
    return length


def parse_message(
    data: bytes | bytearray | memoryview, max_size: int = MAX_MESSAGE_SIZE,
) -> Request | Response:
    """Parse one datagram or one framed stream message.

    Every malformed input raises :class:`SipParseError` and nothing else. Octets past the
    declared Content-Length are dropped (RFC 3261 18.3); without Content-Length the body is
    the rest of the datagram.
    """
    if len(data) > max_size:
        raise SipParseError("message too large")
    if not isinstance(data, bytes):
        data = bytes(data)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    head_end, body_start = find_header_end(data)
    if head_end < 0:
        raise SipParseError("no end of header section")
    lines = _split_lines(data[:head_end].decode("utf-8", "surrogateescape"))
    method, uri, status, reason = _parse_start_line(lines[0])
    headers = _parse_headers(lines)

    seen: set[str] = set()
    cseq_value = length_value = None
    for name, value in headers:
        if name in _TRACKED:
            if name in seen and name in _SINGLE:
                raise SipParseError(f"duplicate {name}")
            seen.add(name)
            if name == "CSeq":
                cseq_value = value
            elif name == "Content-Length":
                length_value = value
    if cseq_value is None or len(seen & _MANDATORY) != len(_MANDATORY):
        raise SipParseError("missing " + ", ".join(sorted(_MANDATORY - seen)))
    cseq = CSeq.parse(cseq_value)
    if method and cseq.method != method:
        raise SipParseError("CSeq method does not match request method")

    if length_value is None:
        body = data[body_start:]
    else:
        length = _body_length(length_value, len(data) - body_start)
        body = data[body_start : body_start + length]

    message: Request | Response
    if method:
        message = Request._trusted(method, uri, headers, body, cseq)
    else:
        message = Response._trusted(status, reason, headers, body, cseq)
    if not message.call_id:
        raise SipParseError("empty Call-ID")
    return message


def _parse_start_line(line: str) -> tuple[str, str, int, str]:
    """Return ``(method, uri, 0, "")`` for a request or ``("", "", status, reason)``."""
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        if version.upper() != "SIP/2.0":
            raise SipParseError("bad SIP version")
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or code[0] not in "123456":
            raise SipParseError("bad status code")
        return "", "", int(code), reason
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError("bad request line")
    method, uri, version = parts
    if version.upper() != "SIP/2.0":
        if version[:4].upper() == "SIP/":
            raise SipParseError("bad SIP version")
        raise SipParseError("bad request line")
    if _TOKEN_RE.fullmatch(method) is None:
        raise SipParseError("bad method")
    if _REQUEST_URI_RE.fullmatch(uri) is None:
        raise SipParseError("bad Request-URI")
    return method, uri, 0, ""


def _stream_length(head: bytes | bytearray) -> int:
    found: bytes | None = None
    for match in _STREAM_LENGTH_RE.finditer(head):
        value = match.group(1).strip(b" \t")
        if found is not None and value != found:
            raise SipParseError("conflicting Content-Length")
        found = value
    if found is None:
        return 0
    if not found.isdigit() or len(found.lstrip(b"0")) > 9:
        raise SipParseError("bad Content-Length")
    return int(found)


class StreamFramer:
    """Cut a TCP/TLS byte stream into whole SIP messages using Content-Length.

    Content-Length is mandatory on streams (RFC 3261 18.3); a missing one counts as 0. CRLF
    keep-alives between messages (RFC 5626 4.4.1) are dropped. A :class:`SipParseError` from
    :meth:`feed` means framing is lost and the connection must be closed.
    """

    __slots__ = ("_buf", "_need", "_scan", "max_size")

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._need = -1  # total size of the message being collected, once its headers are in
        self._scan = 0  # where the header-end search resumes, so trickled input stays linear

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the raw messages completed by them, in order."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while True:
            if self._need < 0:
                if buf and buf[0] in (0x0D, 0x0A):
                    skip = 0
                    size = len(buf)
                    while skip < size and buf[skip] in (0x0D, 0x0A):
                        skip += 1
                    del buf[:skip]
                    self._scan = 0
                if not buf:
                    break
                head_end, body_start = find_header_end(buf, self._scan)
                if head_end < 0:
                    if len(buf) > self.max_size:
                        self._fail("header section too large")
                    self._scan = max(0, len(buf) - 3)
                    break
                total = body_start + _stream_length(buf[:head_end])
                if total > self.max_size:
                    self._fail("message too large")
                self._need = total
            if len(buf) < self._need:
                break
            out.append(bytes(buf[: self._need]))
            del buf[: self._need]
            self._need = -1
            self._scan = 0
        return out

    def _fail(self, reason: str) -> None:
        self._buf.clear()
        self._need = -1
        self._scan = 0
        raise SipParseError(reason)

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buf)
