"""The relay's C receive loop (b2bua/media/_pump.c) driven directly, on real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from b2bua.media._pump import NativeCipher, Pump
from b2bua.media.cipher import make_cipher

RTP = bytes([0x80, 0]) + bytes(10) + b"x" * 160


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    for _ in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        made.append(s)
    yield made
    for s in made:
        s.close()


def _settle() -> None:
    time.sleep(0.05)  # loopback delivery is immediate; leave it a moment anyway


def test_slow_mode_delivers_each_datagram_with_its_source(sockets: list[socket.socket]
                                                           ) -> None:
    relay, peer, _ = sockets
    pump = Pump()
    got: list[tuple[bytes, Any]] = []
    slot = pump.add(relay.fileno(), lambda data, addr: got.append((data, addr)))
    for i in range(20):  # more than one recvmmsg batch
        peer.sendto(bytes([i]), relay.getsockname())
    _settle()
    assert pump.run() == 20
    assert [d for d, _ in got] == [bytes([i]) for i in range(20)]
    assert {a for _, a in got} == {peer.getsockname()}
    assert pump.run() == 0  # nothing left
    pump.remove(slot)
    peer.sendto(b"late", relay.getsockname())
    _settle()
    assert pump.run() == 0 and len(got) == 20  # removed: never read again
    assert pump.active() == 0


def test_forward_mode_relays_rtp_from_the_connected_peer_only_in_c(
        sockets: list[socket.socket]) -> None:
    relay_in, caller, callee = sockets
    relay_out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay_out.bind(("127.0.0.1", 0))
    relay_out.connect(callee.getsockname())
    got: list[bytes] = []
    pump = Pump()
    slot = pump.add(relay_in.fileno(), lambda data, addr: got.append(data))
    with pytest.raises(OSError):  # only from a connected (latched) source
        pump.forward(slot, relay_out.fileno())
    relay_in.connect(caller.getsockname())
    pump.forward(slot, relay_out.fileno())
    for _ in range(5):
        caller.sendto(RTP, relay_in.getsockname())
    caller.sendto(b"\x80\xc9" + bytes(6), relay_in.getsockname())  # RTCP on the RTP port
    caller.sendto(b"\x40" + RTP[1:], relay_in.getsockname())  # version 1
    _settle()
    assert pump.run() == 7
    _settle()
    relayed = []
    while True:
        try:
            relayed.append(callee.recv(2048))
        except BlockingIOError:
            break
    assert relayed == [RTP] * 5
    assert got == [b"\x80\xc9" + bytes(6), b"\x40" + RTP[1:]]  # not RTP: to Python
    *counts, last_rx = pump.take(slot)
    assert counts == [5, 5 * len(RTP), 0, 0, 0, 0]
    assert last_rx is not None and abs(last_rx - time.monotonic()) < 5
    assert pump.take(slot)[:6] == (0, 0, 0, 0, 0, 0)  # taken: zeroed
    # Two XOR ciphers, applied in turn to the payload only (docs/rtp-encryption.md).
    pump.forward(slot, relay_out.fileno(), (NativeCipher(1, b"\x01\x02\x03"),
                                            NativeCipher(1, b"\xff")))
    caller.sendto(RTP, relay_in.getsockname())
    _settle()
    pump.run()
    _settle()
    body = RTP[12:]
    expected = RTP[:12] + bytes(c ^ (1, 2, 3)[i % 3] ^ 0xFF for i, c in enumerate(body))
    assert callee.recv(2048) == expected
    pump.forward(slot, -1)  # back to Python
    caller.sendto(RTP, relay_in.getsockname())
    _settle()
    pump.run()
    assert got[-1] == RTP
    pump.remove(slot)
    relay_out.close()


def test_a_raising_callback_does_not_stop_the_others_but_an_interrupt_does(
        sockets: list[socket.socket]) -> None:
    relay, peer, _ = sockets
    pump = Pump()
    seen: list[bytes] = []
    unraisable: list[Any] = []

    def callback(data: bytes, addr: Any) -> None:
        seen.append(data)
        if data == b"bug":
            raise ValueError("a bug in the protocol")
        if data == b"stop":
            raise KeyboardInterrupt

    slot = pump.add(relay.fileno(), callback)
    for data in (b"bug", b"after"):
        peer.sendto(data, relay.getsockname())
    _settle()
    with pytest.MonkeyPatch.context() as mp:
        import sys
        mp.setattr(sys, "unraisablehook", unraisable.append)
        assert pump.run() == 2
    assert seen == [b"bug", b"after"] and len(unraisable) == 1
    peer.sendto(b"stop", relay.getsockname())
    _settle()
    with pytest.raises(KeyboardInterrupt):
        pump.run()
    peer.sendto(b"again", relay.getsockname())
    _settle()
    assert pump.run() == 1 and seen[-1] == b"again"  # usable after the interrupt
    pump.remove(slot)


def test_slots_are_reused_and_unknown_slots_refused(sockets: list[socket.socket]) -> None:
    a, b, _ = sockets
    pump = Pump()
    first = pump.add(a.fileno(), lambda data, addr: None)
    pump.remove(first)
    with pytest.raises(KeyError):
        pump.take(first)
    with pytest.raises(KeyError):
        pump.remove(first)
    assert pump.add(b.fileno(), lambda data, addr: None) == first
    with pytest.raises(KeyError):
        pump.forward(99, -1)


def _latched(relay_in: socket.socket, caller: socket.socket, callee: socket.socket
             ) -> tuple[socket.socket, Pump, int]:
    """``relay_in`` connected to the caller (latched) in a new pump, and a socket toward
    the callee for it to relay out of."""
    relay_out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay_out.bind(("127.0.0.1", 0))
    relay_out.connect(callee.getsockname())
    relay_in.connect(caller.getsockname())
    pump = Pump()
    return relay_out, pump, pump.add(relay_in.fileno(), lambda data, addr: None)


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


@pytest.mark.parametrize(("rx", "tx"), [((2, b"rc4-secret"), None),
                                        (None, (3, b"0123456789abcdef")),
                                        ((3, b"0123456789abcdef"), (2, b"rc4-secret")),
                                        ((1, b"xor"), (3, b"fedcba9876543210"))])
def test_forward_mode_deciphers_and_enciphers_as_the_python_ciphers_do(
        sockets: list[socket.socket], rx: tuple[int, bytes] | None,
        tx: tuple[int, bytes] | None) -> None:
    relay_in, caller, callee = sockets
    relay_out, pump, slot = _latched(relay_in, caller, callee)
    specs = [spec for spec in (rx, tx) if spec is not None]
    pump.forward(slot, relay_out.fileno(), tuple(NativeCipher(*spec) for spec in specs))
    # Different sequence numbers, timestamps and lengths: a keystream per packet.
    sent = [bytes([0x80, 0, 0, seq]) + seq.to_bytes(4, "big") + b"\xde\xad\xbe\xef"
            + bytes(range(seq % 7, seq % 7 + 20 + 13 * seq)) for seq in range(6)]
    for packet in sent:
        caller.sendto(packet, relay_in.getsockname())
    _settle()
    assert pump.run() == len(sent)
    _settle()
    expected = []
    for packet in sent:
        for spec in specs:
            packet = make_cipher(*spec).encrypt(packet)
        expected.append(packet)
    assert _drain(callee) == expected
    pump.remove(slot)
    relay_out.close()


def test_a_cipher_failure_drops_the_packet_and_is_counted(sockets: list[socket.socket]
                                                          ) -> None:
    relay_in, caller, callee = sockets
    relay_out, pump, slot = _latched(relay_in, caller, callee)
    aes = NativeCipher(3, b"0123456789abcdef")
    pump.forward(slot, relay_out.fileno(), (aes,))
    aes._inject_failures(2)  # as if libcrypto failed on the next two packets
    for seq in range(5):
        caller.sendto(bytes([0x80, 0, 0, seq]) + bytes(8) + b"payload", relay_in.getsockname())
    _settle()
    assert pump.run() == 5
    _settle()
    relayed = _drain(callee)
    assert [p[3] for p in relayed] == [2, 3, 4]  # the failed ones never left
    assert relayed[0] == make_cipher(3, b"0123456789abcdef").encrypt(
        bytes([0x80, 0, 0, 2]) + bytes(8) + b"payload")
    packets, _, _, _, _, cipher_errors, last_rx = pump.take(slot)
    assert (packets, cipher_errors) == (3, 2) and last_rx is not None
    pump.remove(slot)
    relay_out.close()


def test_forward_refuses_anything_but_up_to_two_native_ciphers(
        sockets: list[socket.socket]) -> None:
    relay_in, caller, _ = sockets
    relay_in.connect(caller.getsockname())
    pump = Pump()
    slot = pump.add(relay_in.fileno(), lambda data, addr: None)
    xor = NativeCipher(1, b"k")
    with pytest.raises(TypeError):
        pump.forward(slot, relay_in.fileno(), (b"an XOR key",))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pump.forward(slot, relay_in.fileno(), (xor, xor, xor))
    pump.remove(slot)
