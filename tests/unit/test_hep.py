"""HEP3 encoding (b2bua/sip/hep.py) byte for byte, the destination parameter, and the
sender (b2bua/aio/hep.py) on a loopback socket."""

from __future__ import annotations

import socket
import struct

import pytest

from b2bua.aio.hep import HepSender
from b2bua.config.registry import REGISTRY, ParamError
from b2bua.sip import hep

OPTIONS = b"OPTIONS sip:a SIP/2.0\r\n\r\n"


def test_an_ipv4_udp_message_byte_for_byte() -> None:
    packet = hep.encode(OPTIONS, ("10.0.0.1", 5060), ("10.0.0.2", 5080), tcp=False,
                        at=1700000000.25, capture_id=2001, password=b"pw",
                        correlation=b"abc")
    assert packet == (
        b"HEP3" b"\x00\x8d"                                   # magic, total length 141
        b"\x00\x00\x00\x01\x00\x07" b"\x02"                   # IP family: AF_INET
        b"\x00\x00\x00\x02\x00\x07" b"\x11"                   # IP protocol: UDP (17)
        b"\x00\x00\x00\x03\x00\x0a" b"\x0a\x00\x00\x01"       # IPv4 source
        b"\x00\x00\x00\x04\x00\x0a" b"\x0a\x00\x00\x02"       # IPv4 destination
        b"\x00\x00\x00\x07\x00\x08" b"\x13\xc4"               # source port 5060
        b"\x00\x00\x00\x08\x00\x08" b"\x13\xd8"               # destination port 5080
        b"\x00\x00\x00\x09\x00\x0a" b"\x65\x53\xf1\x00"       # seconds 1700000000
        b"\x00\x00\x00\x0a\x00\x0a" b"\x00\x03\xd0\x90"       # microseconds 250000
        b"\x00\x00\x00\x0b\x00\x07" b"\x01"                   # payload type: SIP
        b"\x00\x00\x00\x0c\x00\x0a" b"\x00\x00\x07\xd1"       # capture agent id 2001
        b"\x00\x00\x00\x0e\x00\x08" b"pw"                     # authentication key
        b"\x00\x00\x00\x11\x00\x09" b"abc"                    # correlation id
        b"\x00\x00\x00\x0f\x00\x1f" + OPTIONS                 # payload
    )


def test_an_ipv6_tcp_message_without_key_nor_correlation() -> None:
    packet = hep.encode(OPTIONS, ("2001:db8::1", 5060), ("2001:db8::2", 5061), tcp=True,
                        at=10.9999999, capture_id=0)
    chunks = _chunks(packet)
    assert chunks[1] == bytes((socket.AF_INET6,)) and chunks[2] == b"\x06"
    assert chunks[5] == socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    assert chunks[6] == socket.inet_pton(socket.AF_INET6, "2001:db8::2")
    # Rounded to the microsecond: the next second, not 1,000,000 microseconds.
    assert (chunks[9], chunks[10]) == (struct.pack("!I", 11), struct.pack("!I", 0))
    assert 14 not in chunks and 17 not in chunks and chunks[15] == OPTIONS
    assert struct.unpack("!H", packet[4:6])[0] == len(packet)


def test_a_payload_too_long_for_the_16_bit_length_is_cut() -> None:
    packet = hep.encode(b"x" * 70000, ("10.0.0.1", 1), ("10.0.0.2", 2), tcp=False, at=0,
                        capture_id=1)
    assert len(packet) == hep.MAX_PACKET == struct.unpack("!H", packet[4:6])[0]
    assert _chunks(packet)[15] == b"x" * len(_chunks(packet)[15])


def test_addresses_must_be_ip_literals_of_one_family() -> None:
    with pytest.raises(ValueError):
        hep.encode(OPTIONS, ("10.0.0.1", 1), ("2001:db8::2", 2), tcp=False, at=0,
                   capture_id=1)
    with pytest.raises(ValueError):
        hep.encode(OPTIONS, ("vendor.example", 1), ("10.0.0.2", 2), tcp=False, at=0,
                   capture_id=1)


@pytest.mark.parametrize(("text", "parsed"), [
    ("", None), ("  ", None), ("10.1.2.3", ("10.1.2.3", 9060)),
    ("10.1.2.3:9999", ("10.1.2.3", 9999)), ("[2001:db8::5]:7", ("2001:db8::5", 7)),
    ("2001:db8::5", ("2001:db8::5", 9060)),
])
def test_the_destination_parameter(text: str, parsed: tuple[str, int] | None) -> None:
    assert hep.parse_destination(text) == parsed
    REGISTRY["SS_HEP_DESTINATION"].validate(text)


@pytest.mark.parametrize("text", ["homer.example:9060", "10.1.2.3:0", "10.1.2.3:x",
                                  "[2001:db8::5]x", "10.1.2.3:70000"])
def test_a_bad_destination_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        hep.parse_destination(text)
    with pytest.raises(ParamError):
        REGISTRY["SS_HEP_DESTINATION"].validate(text)


def test_the_sender_copies_what_is_sent_and_received_to_the_collector() -> None:
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(2)
    sender = HepSender()
    sender.local = ("127.0.0.1", 5060)
    try:
        assert not sender.on
        sender.tap(True, OPTIONS, "udp", "127.0.0.9", 5070)  # off: nothing
        sender.configure(f"127.0.0.1:{collector.getsockname()[1]}", 7, "")
        message = OPTIONS[:-2] + b"Call-ID: c1\r\n\r\n"
        sender.tap(True, message, "udp", "127.0.0.9", 5070)
        sender.tap(False, message, "tcp", "127.0.0.9", 5071)
        sender.tap(False, b"\r\n\r\n", "udp", "127.0.0.9", 5071)  # keep-alives
        sender.tap(True, b"HELLO", "udp", "127.0.0.9", 5071)
        sender.tap(True, b"HELLO THERE\r\n", "udp", "127.0.0.9", 5071)
        sent, received = _chunks(collector.recv(70000)), _chunks(collector.recv(70000))
        assert (sent[3], sent[7], sent[4], sent[8]) == (
            bytes([127, 0, 0, 1]), b"\x13\xc4", bytes([127, 0, 0, 9]), b"\x13\xce")
        assert (received[3], received[8], received[2]) == (
            bytes([127, 0, 0, 9]), b"\x13\xc4", b"\x06")
        assert sent[12] == struct.pack("!I", 7) and sent[17] == b"c1"
        assert sent[15] == message
        assert sender.snapshot() == {"sent": 2, "errors": 0, "skipped": 0, "on": True}
        sender.tap(True, message, "udp", "::1", 5070)  # two families: not encodable
        assert sender.stats.skipped == 1
        sender.configure("", 7, "")
        assert not sender.on
    finally:
        sender.close()
        collector.close()


def test_a_send_that_fails_is_counted_never_raised() -> None:
    class Full:
        def sendto(self, data: bytes, address: tuple[str, int]) -> int:
            raise BlockingIOError("no buffer space")

        def close(self) -> None:
            pass

    sender = HepSender()
    sender.configure("127.0.0.1:9", 1, "key")
    sender._sock.close()  # type: ignore[union-attr]
    sender._sock = Full()  # type: ignore[assignment]
    sender.tap(True, OPTIONS, "udp", "127.0.0.9", 5070)
    assert sender.stats.errors == 1 and sender.stats.sent == 0


def _chunks(packet: bytes) -> dict[int, bytes]:
    assert packet[:4] == b"HEP3"
    out: dict[int, bytes] = {}
    pos = 6
    while pos < len(packet):
        vendor, kind, length = struct.unpack("!HHH", packet[pos:pos + 6])
        assert vendor == 0 and length >= 6
        out[kind] = packet[pos + 6:pos + length]
        pos += length
    assert pos == len(packet)
    return out


def test_the_transports_tap_what_they_send_and_receive() -> None:
    """The HEP tap sits where bytes meet the wire: UDP datagrams both ways, and each
    framed TCP message (b2bua/aio/transport.py)."""
    from b2bua.aio.transport import TcpConnection, TcpTransport, TransportStats, UdpTransport

    taps: list[tuple[bool, bytes, str, str, int]] = []

    def tap(sent: bool, data: bytes, transport: str, host: str, port: int) -> None:
        taps.append((sent, data, transport, host, port))

    class Wire:
        def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
            pass

        def write(self, data: bytes) -> None:
            pass

        def is_closing(self) -> bool:
            return False

        def get_extra_info(self, name: str) -> tuple[str, int]:
            return ("127.0.0.9", 5071)

    udp = UdpTransport(lambda data, peer: None, TransportStats())
    udp.connection_made(Wire())  # type: ignore[arg-type]
    udp.tap = tap
    udp.datagram_received(OPTIONS, ("127.0.0.9", 5070))
    udp.datagram_received(b"\r\n\r\n", ("127.0.0.9", 5070))  # a keep-alive: not SIP
    udp.send(OPTIONS, "127.0.0.9", 5070)
    tcp = TcpTransport(lambda data, peer: None, TransportStats())
    tcp.tap = tap
    conn = TcpConnection(tcp, outbound=False)
    conn.connection_made(Wire())  # type: ignore[arg-type]
    conn.data_received(OPTIONS[:-2] + b"Content-Length: 0\r\n\r\n")
    conn.send(OPTIONS)
    assert [(sent, transport, port) for sent, _, transport, _, port in taps] == [
        (False, "udp", 5070), (True, "udp", 5070), (False, "tcp", 5071),
        (True, "tcp", 5071)]
