"""HEP version 3 (the Homer Encapsulation Protocol, also called EEP): a SIP message and
where it went, wrapped for a capture server (Homer, sngrep ``-L``).

A packet is ``HEP3``, its total length (16 bits), then chunks, each a vendor id (0:
generic), a type and its own length (16 bits each, the 6 bytes of its head included),
then its value, all big-endian. The generic types used here (sipcapture's HEP3
specification): 1 IP family, 2 IP protocol, 3/4 IPv4 source/destination (5/6 IPv6),
7/8 source/destination port, 9/10 time in seconds/microseconds, 11 payload type (1:
SIP), 12 capture agent id, 14 authentication key, 15 payload, 17 correlation id.

Pure functions: the sender is :mod:`b2bua.aio.hep`.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

DEFAULT_PORT = 9060
MAX_PACKET = 0xFFFF  # the total length is 16 bits

_FAMILY, _PROTO, _SRC4, _DST4, _SRC6, _DST6 = 1, 2, 3, 4, 5, 6
_SRC_PORT, _DST_PORT, _SECONDS, _MICROS, _TYPE, _AGENT = 7, 8, 9, 10, 11, 12
_AUTH, _PAYLOAD, _CORRELATION = 14, 15, 17
_SIP = 1
_UDP, _TCP = 17, 6
_HEAD = struct.Struct("!4sH")
_CHUNK = struct.Struct("!HHH")


def _chunk(kind: int, value: bytes) -> bytes:
    return _CHUNK.pack(0, kind, _CHUNK.size + len(value)) + value


def encode(payload: bytes, src: tuple[str, int], dst: tuple[str, int], *, tcp: bool,
           at: float, capture_id: int, password: bytes = b"",
           correlation: bytes = b"") -> bytes:
    """One HEP3 packet of a SIP message sent from ``src`` to ``dst`` (IP literals of one
    family) at Unix time ``at``. A payload that would not fit the 16-bit length is cut
    short. Raises ValueError for an address that is not an IP literal."""
    v6 = ":" in src[0]
    family = socket.AF_INET6 if v6 else socket.AF_INET
    try:
        src_ip = socket.inet_pton(family, src[0])
        dst_ip = socket.inet_pton(family, dst[0])
    except OSError:
        raise ValueError(f"not IP addresses of one family: {src[0]}, {dst[0]}") from None
    micros_total = round(at * 1_000_000)
    seconds, micros = divmod(micros_total, 1_000_000)
    chunks = [
        _chunk(_FAMILY, bytes((family,))),
        _chunk(_PROTO, bytes((_TCP if tcp else _UDP,))),
        _chunk(_SRC6 if v6 else _SRC4, src_ip),
        _chunk(_DST6 if v6 else _DST4, dst_ip),
        _chunk(_SRC_PORT, struct.pack("!H", src[1])),
        _chunk(_DST_PORT, struct.pack("!H", dst[1])),
        _chunk(_SECONDS, struct.pack("!I", seconds & 0xFFFFFFFF)),
        _chunk(_MICROS, struct.pack("!I", micros)),
        _chunk(_TYPE, bytes((_SIP,))),
        _chunk(_AGENT, struct.pack("!I", capture_id & 0xFFFFFFFF)),
    ]
    if password:
        chunks.append(_chunk(_AUTH, password))
    if correlation:
        chunks.append(_chunk(_CORRELATION, correlation))
    head = b"".join(chunks)
    room = MAX_PACKET - _HEAD.size - len(head) - _CHUNK.size
    body = _chunk(_PAYLOAD, payload[:room])
    return _HEAD.pack(b"HEP3", _HEAD.size + len(head) + len(body)) + head + body


def parse_destination(text: str) -> tuple[str, int] | None:
    """``SS_HEP_DESTINATION``: ``ip``, ``ip:port`` or ``[ipv6]:port`` (port 9060 when
    not given); empty: None. Raises ValueError when it is none of these."""
    text = text.strip()
    if not text:
        return None
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} is not ip:port")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{text!r} does not start with an IP address") from None
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return host, int(port_text)
