"""Capture files for sipp's ``play_pcap_audio``/``_video``/``_image``: RTP or UDPTL
packets in a classic libpcap file (Ethernet, IPv4, UDP), 20 ms apart. sipp replaces the
addresses and ports with the call's; only the payloads and the timing matter."""

from __future__ import annotations

import struct
from pathlib import Path


def rtp(seq: int, payload_type: int, ssrc: int, size: int = 160) -> bytes:
    header = struct.pack("!BBHII", 0x80, payload_type, seq & 0xFFFF, seq * 160, ssrc)
    return header + bytes((seq + i) & 0xFF for i in range(size))


def udptl(seq: int) -> bytes:
    """A T.38 UDPTL packet (ITU-T T.38 annex): sequence number, then an IFP; its first
    byte is never an RTP version-2 header, so an RTP-only relay would drop it."""
    return struct.pack("!H", seq) + b"\x06\x40" + bytes(12)


def write(path: Path, payloads: list[bytes], interval: float = 0.02) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for index, payload in enumerate(payloads):
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
        frame = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00" + ip
        when = index * interval
        out.append(struct.pack("<IIII", int(when), int(when % 1 * 1e6), len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))
    return path
