"""RTP fixed-header parsing (RFC 3550 section 5.1), just enough for the relay and ciphers.

Everything here is bounded (no loops over the packet) and never raises on malformed
input: the functions return ``None`` (or ``False``) instead.

What counts as a well-formed RTP packet here (structural checks only):

* at least 12 bytes, version field 2;
* not RTCP multiplexed on the RTP port (RFC 5761: second byte 192-223, i.e. a payload
  type of 64-95 with the marker bit set, is RTCP);
* the CSRC list (4 bytes per count) fits in the packet;
* when the X bit is set, the 4-byte extension header fits and its declared length
  (in 32-bit words) fits too.

The padding count (P bit, last byte) is *not* checked: the ciphers encrypt the padding
together with the payload (as SRTP does), so on an encrypted leg it is unreadable until
decrypted. A payload of zero bytes is valid.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "RTP_HEADER_LEN",
    "RtpHeader",
    "is_rtcp",
    "is_rtp",
    "parse_header",
    "payload_offset",
]

RTP_HEADER_LEN = 12


def payload_offset(data: bytes) -> int | None:
    """Offset of the payload in an RTP packet, or ``None`` when it is not well-formed RTP.

    The offset covers the fixed header, the CSRC list and the header extension; it may
    equal ``len(data)`` (empty payload).
    """
    n = len(data)
    if n < RTP_HEADER_LEN:
        return None
    b0 = data[0]
    if b0 & 0xC0 != 0x80:
        return None
    if 192 <= data[1] <= 223:
        return None  # RTCP multiplexed on the RTP port
    off = RTP_HEADER_LEN + ((b0 & 0x0F) << 2)
    if b0 & 0x10:
        if n < off + 4:
            return None
        off += 4 + (((data[off + 2] << 8) | data[off + 3]) << 2)
    if off > n:
        return None
    return off


def is_rtp(data: bytes) -> bool:
    """True when ``data`` is a structurally well-formed RTP packet (see module doc)."""
    return payload_offset(data) is not None


def is_rtcp(data: bytes) -> bool:
    """True for something that looks like an RTCP packet: version 2, type 192-223, 8+ bytes."""
    return len(data) >= 8 and data[0] & 0xC0 == 0x80 and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fixed-header fields of an RTP packet and where its payload starts."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc_count: int
    extension: bool
    padding: bool
    payload_offset: int


def parse_header(data: bytes) -> RtpHeader | None:
    """The header fields of a well-formed RTP packet, or ``None``."""
    off = payload_offset(data)
    if off is None:
        return None
    b0 = data[0]
    return RtpHeader(
        marker=bool(data[1] & 0x80),
        payload_type=data[1] & 0x7F,
        sequence=int.from_bytes(data[2:4], "big"),
        timestamp=int.from_bytes(data[4:8], "big"),
        ssrc=int.from_bytes(data[8:12], "big"),
        csrc_count=b0 & 0x0F,
        extension=bool(b0 & 0x10),
        padding=bool(b0 & 0x20),
        payload_offset=off,
    )
