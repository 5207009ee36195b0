"""The media relay on real UDP sockets on 127.0.0.1 under uvloop (b2bua.media.relay)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from hypothesis import example, given, settings
from hypothesis import strategies as st

from b2bua.media.cipher import make_cipher
from b2bua.media.relay import PortAllocator, PortExhausted, RelaySession, _RtpSender
from b2bua.media.rtp import is_rtcp, payload_offset

HOST = "127.0.0.1"
KEYS = {1: b"VosKey", 2: b"0123456789abcdef", 3: bytes(range(16))}
TIMEOUT = 5.0


def run(fn: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(fn(), 30)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(bounded())


def rtp(seq: int, payload: bytes, *, ssrc: int = 0x1234ABCD, pt: int = 0) -> bytes:
    return (bytes([0x80, pt]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
            + ssrc.to_bytes(4, "big") + payload)


def payload(i: int, size: int = 160) -> bytes:
    return bytes((i * 7 + j) & 0xFF for j in range(size))


RTCP_RR = bytes.fromhex("80c90001") + (0x1234ABCD).to_bytes(4, "big")


class Peer(asyncio.DatagramProtocol):
    """A UDP endpoint standing for a phone or gateway: records what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[Any, ...]]] = asyncio.Queue()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    @property
    def addr(self) -> tuple[str, int]:
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)

    async def recv(self, n: int = 1) -> list[tuple[bytes, tuple[Any, ...]]]:
        out = []
        for _ in range(n):
            out.append(await asyncio.wait_for(self.queue.get(), TIMEOUT))
        return out

    async def nothing(self, wait: float = 0.15) -> bool:
        await asyncio.sleep(wait)
        return self.queue.empty()

    def close(self) -> None:
        self.transport.close()


async def peer(host: str = HOST, port: int = 0) -> Peer:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(Peer, local_addr=(host, port))
    return proto


async def pair_peers() -> tuple[Peer, Peer, Peer, Peer]:
    """RTP and RTCP endpoints for two parties; RTCP sockets on RTP + 1 when possible."""
    out = []
    for _ in range(2):
        for _attempt in range(50):
            r = await peer()
            if r.port < 65535:
                try:
                    c = await peer(port=r.port + 1)
                except OSError:
                    r.close()
                    continue
                out += [r, c]
                break
            r.close()
        else:
            raise RuntimeError("no adjacent UDP ports on loopback")
    return out[0], out[1], out[2], out[3]


async def relay(allocator: PortAllocator, **kw: Any) -> RelaySession:
    session = RelaySession(allocator, HOST, **kw)
    await session.start()
    return session


def alloc(base: int = 42000) -> PortAllocator:
    return PortAllocator(base, base + 999)


# -- allocator -----------------------------------------------------------------------------

def test_allocator_even_pairs_exhaustion_release() -> None:
    a = PortAllocator(10001, 10010)  # pairs 10002/3 .. 10008/9; 10010 has no 10011
    assert a.capacity == 4
    got = [a.allocate() for _ in range(4)]
    assert got == [10002, 10004, 10006, 10008]
    with pytest.raises(PortExhausted):
        a.allocate()
    assert a.release(10004) and not a.release(10004) and not a.release(12345)
    assert a.allocate() == 10004
    for p in got:
        a.release(p)
    assert a.in_use == 0 and a.available == 4
    # Least recently released first.
    assert a.allocate() == 10002
    with pytest.raises(ValueError):
        PortAllocator(10, 10)
    with pytest.raises(ValueError):
        PortAllocator(20000, 10000)


def test_allocator_10000_cycles_leak_free() -> None:
    a = PortAllocator(30000, 30099)
    held: list[int] = []
    for i in range(10_000):
        held.append(a.allocate())
        if len(held) > 20 or i % 3 == 0:
            a.release(held.pop(0))
    for p in held:
        a.release(p)
    assert a.in_use == 0 and a.available == a.capacity == 50
    assert a.allocated() == frozenset()
    assert len({a.allocate() for _ in range(50)}) == 50


def test_sessions_release_ports_and_exhaust() -> None:
    async def body() -> None:
        a = PortAllocator(43000, 43007)  # 4 pairs: two sessions
        s1 = await relay(a)
        s2 = await relay(a)
        assert a.in_use == 4
        assert len({*s1.ports, *s2.ports}) == 4
        s3 = RelaySession(a, HOST)
        with pytest.raises(PortExhausted):
            await s3.start()
        assert a.in_use == 4
        s1.close()
        s1.close()  # idempotent
        await s1.wait_closed()  # ports go back once the sockets are really closed
        assert a.in_use == 2 and s1.released
        s4 = await relay(a)
        s2.close()
        s4.close()
        await asyncio.sleep(0)
        assert a.in_use == 0  # one loop iteration is enough
        for _ in range(200):  # sockets are really closed: the same ports bind again
            s = await relay(a)
            await s.wait_closed()
        assert a.in_use == 0

    run(body)


def _free_pair_base(blocker: socket.socket) -> int:
    """An even port whose pair is free, its RTCP half then bound by ``blocker``."""
    for base in range(43100, 49000, 8):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((HOST, base))
            blocker.bind((HOST, base + 1))
            return base
        except OSError:
            continue
        finally:
            probe.close()
    raise RuntimeError("no free port range for the test")


def test_busy_port_is_skipped() -> None:
    async def body() -> None:
        # The RTCP half of the first pair is taken by someone else (found free first).
        blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        base = _free_pair_base(blocker)
        a = PortAllocator(base, base + 7)
        try:
            s = await relay(a)
            assert base not in s.ports
            assert a.in_use == 2
            await s.wait_closed()
        finally:
            blocker.close()
        assert a.in_use == 0

    run(body)


# -- relaying ------------------------------------------------------------------------------

def test_passthrough_both_ways_rtp_and_rtcp() -> None:
    async def body() -> None:
        a_rtp, a_rtcp, b_rtp, b_rtcp = await pair_peers()
        s = await relay(alloc(44000))
        s.a.set_remote(HOST, a_rtp.port)
        s.b.set_remote(HOST, b_rtp.port)
        sent_ab = [rtp(i, payload(i)) for i in range(100)]
        for p in sent_ab:
            a_rtp.send(p, (HOST, s.a.rtp_port))
        got = await b_rtp.recv(100)
        assert [d for d, _ in got] == sent_ab
        assert {src for _, src in got} == {(HOST, s.b.rtp_port)}  # symmetric: from b's port
        sent_ba = [rtp(i, payload(i, 20), ssrc=99) for i in range(50)]
        for p in sent_ba:
            b_rtp.send(p, (HOST, s.b.rtp_port))
        got = await a_rtp.recv(50)
        assert [d for d, _ in got] == sent_ba
        assert {src for _, src in got} == {(HOST, s.a.rtp_port)}
        # RTCP on the +1 ports, untouched.
        a_rtcp.send(RTCP_RR, (HOST, s.a.rtcp_port))
        (d, src), = await b_rtcp.recv()
        assert d == RTCP_RR and src == (HOST, s.b.rtcp_port)
        b_rtcp.send(RTCP_RR + b"x" * 4, (HOST, s.b.rtcp_port))
        (d, _), = await a_rtcp.recv()
        assert d == RTCP_RR + b"x" * 4
        st_ = s.stats()
        assert st_["a_to_b"]["rx_packets"] == 100 and st_["a_to_b"]["forwarded"] == 100
        assert st_["a_to_b"]["rx_bytes"] == sum(map(len, sent_ab))
        assert st_["b_to_a"]["rx_packets"] == 50
        assert st_["a_to_b"]["rtcp_packets"] == 1 and st_["b_to_a"]["rtcp_packets"] == 1
        assert s.a.last_rx is not None and s.b.last_rx is not None
        assert s.a.first_rtp_at is not None and s.a.first_rtp_at <= s.a.last_rx
        assert (s.a.silent_for() or 0) >= 0
        s.close()
        for p_ in (a_rtp, a_rtcp, b_rtp, b_rtcp):
            p_.close()

    run(body)


def test_latching_to_another_port_than_sdp() -> None:
    async def body() -> None:
        sdp_socket = await peer()  # what A's SDP says
        real = await peer()  # where A really sends from (a NAT, or an asymmetric phone)
        b = await peer()
        s = await relay(alloc(44100))
        s.a.set_remote(HOST, sdp_socket.port)
        s.b.set_remote(HOST, b.port)
        real.send(rtp(1, payload(1)), (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == rtp(1, payload(1))
        assert s.a.latched and s.a.remote == real.addr
        b.send(rtp(2, payload(2), ssrc=5), (HOST, s.b.rtp_port))
        (d, src), = await real.recv()
        assert d == rtp(2, payload(2), ssrc=5) and src == (HOST, s.a.rtp_port)
        assert await sdp_socket.nothing()
        # Anti-hijack: once latched, another source on the same IP is dropped (by the
        # kernel: the leg's socket is connected to the latched source)...
        assert s.a.connected_to == real.addr
        intruder = await peer()
        intruder.send(rtp(3, b"evil" * 40), (HOST, s.a.rtp_port))
        await asyncio.sleep(0.1)
        assert s.a.rx_packets == 1 and s.a.rx_foreign == 0
        assert await b.nothing(0.05)
        # ...and cannot move the latch: media still goes to the latched source.
        b.send(rtp(3, payload(3), ssrc=5), (HOST, s.b.rtp_port))
        (d, _), = await real.recv()
        assert d == rtp(3, payload(3), ssrc=5)
        assert await intruder.nothing(0.05)
        # The same SDP again keeps the latch; a new SDP address re-opens it.
        s.a.set_remote(HOST, sdp_socket.port)
        assert s.a.latched
        s.a.set_remote(HOST, intruder.port)
        assert not s.a.latched and s.a.remote == intruder.addr
        s.close()
        for p in (sdp_socket, real, b, intruder):
            p.close()

    run(body)


def test_packets_queued_before_the_latch_are_checked_one_by_one() -> None:
    """The first packet latches (and connects) the leg; a foreign packet that was already
    queued behind it is still read with its source, refused and counted."""
    async def body() -> None:
        real, intruder, b = await peer(), await peer(), await peer()
        s = await relay(alloc(44150))
        s.a.set_remote(HOST, real.port)
        s.b.set_remote(HOST, b.port)
        real.send(rtp(1, payload(1)), (HOST, s.a.rtp_port))
        intruder.send(rtp(2, b"evil" * 40), (HOST, s.a.rtp_port))  # no await between
        real.send(rtp(3, payload(3)), (HOST, s.a.rtp_port))
        got = await b.recv(2)
        assert [d for d, _ in got] == [rtp(1, payload(1)), rtp(3, payload(3))]
        assert s.a.rx_foreign == 1 and s.a.rx_packets == 2
        assert s.a.connected_to == real.addr
        # A new SDP address dissolves the association: the leg latches again.
        s.a.set_remote(HOST, intruder.port)
        assert s.a.connected_to is None
        intruder.send(rtp(4, payload(4)), (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == rtp(4, payload(4)) and s.a.connected_to == intruder.addr
        b.send(rtp(5, payload(5)), (HOST, s.b.rtp_port))
        (d, _), = await intruder.recv()
        assert d == rtp(5, payload(5))
        s.close()
        for p in (real, intruder, b):
            p.close()

    run(body)


def test_non_nat_leg_refuses_other_ip_nat_leg_latches() -> None:
    async def body() -> None:
        other_ip = await peer("127.0.0.2")
        a_sdp = await peer()
        b = await peer()
        s = await relay(alloc(44200))
        s.a.set_remote(HOST, a_sdp.port)
        s.b.set_remote(HOST, b.port)
        other_ip.send(rtp(1, payload(1)), (HOST, s.a.rtp_port))
        await asyncio.sleep(0.1)
        assert s.a.rx_foreign == 1 and not s.a.latched and s.a.first_rtp_at is None
        assert await b.nothing(0.05)
        s.close()
        # The same from a leg marked as behind NAT latches.
        s = await relay(alloc(44300), a_nat=True)
        s.a.set_remote(HOST, a_sdp.port)
        s.b.set_remote(HOST, b.port)
        other_ip.send(rtp(1, payload(1)), (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == rtp(1, payload(1))
        assert s.a.latched and s.a.remote == other_ip.addr
        b.send(rtp(9, payload(9)), (HOST, s.b.rtp_port))
        (d, _), = await other_ip.recv()
        assert d == rtp(9, payload(9))
        # RTCP latches separately; before it does, it goes to the latched IP, RTP port + 1.
        assert s.a.remote_rtcp == ("127.0.0.2", other_ip.port + 1)
        s.close()
        for p in (other_ip, a_sdp, b):
            p.close()

    run(body)


def test_latching_off_sends_to_sdp() -> None:
    async def body() -> None:
        sdp_socket, real, b = await peer(), await peer(), await peer()
        s = await relay(alloc(44400), latching=False)
        s.a.set_remote(HOST, sdp_socket.port)
        s.b.set_remote(HOST, b.port)
        real.send(rtp(1, payload(1)), (HOST, s.a.rtp_port))
        await b.recv()
        b.send(rtp(2, payload(2)), (HOST, s.b.rtp_port))
        (d, _), = await sdp_socket.recv()
        assert d == rtp(2, payload(2)) and not s.a.latched
        assert await real.nothing(0.05)
        s.close()
        for p in (sdp_socket, real, b):
            p.close()

    run(body)


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_encryption_on_leg_b_only(mode: int) -> None:
    async def body() -> None:
        a, b = await peer(), await peer()
        cipher = make_cipher(mode, KEYS[mode])
        s = await relay(alloc(44500 + 10 * mode), b_cipher=make_cipher(mode, KEYS[mode]))
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        plain = [rtp(i, payload(i)) for i in range(20)]
        for p in plain:
            a.send(p, (HOST, s.a.rtp_port))
        got = [d for d, _ in await b.recv(20)]
        assert got == [cipher.encrypt(p) for p in plain]
        assert all(g[:12] == p[:12] and g[12:] != p[12:] for g, p in zip(got, plain, strict=True))
        back = [rtp(i, payload(i + 50), ssrc=77) for i in range(20)]
        for p in back:
            b.send(cipher.encrypt(p), (HOST, s.b.rtp_port))
        assert [d for d, _ in await a.recv(20)] == back
        # RTCP multiplexed on the RTP port is relayed untouched, not encrypted.
        a.send(RTCP_RR, (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == RTCP_RR
        s.close()
        a.close()
        b.close()

    run(body)


def test_same_cipher_both_legs_passes_ciphertext_through() -> None:
    async def body() -> None:
        a, b = await peer(), await peer()
        c = make_cipher(3, KEYS[3])
        s = await relay(alloc(44600), a_cipher=c, b_cipher=make_cipher(3, KEYS[3]))
        assert s.a.rtp_proto.xf is None and s.b.rtp_proto.xf is None
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        p = c.encrypt(rtp(1, payload(1)))
        a.send(p, (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == p
        # Changing one leg's cipher recomposes the transforms.
        s.b.set_cipher(make_cipher(1, KEYS[1]))
        a.send(p, (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == make_cipher(1, KEYS[1]).encrypt(rtp(1, payload(1)))
        s.close()
        a.close()
        b.close()

    run(body)


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_chained_relays_encrypted_middle_hop(mode: int) -> None:
    """A -> relay1 -(encrypted, via a tap)-> relay2 -> B, and back."""

    async def body() -> None:
        a, b, tap = await peer(), await peer(), await peer()
        alloc_ = alloc(45000 + 100 * mode)
        r1 = await relay(alloc_, b_cipher=make_cipher(mode, KEYS[mode]))
        r2 = await relay(alloc_, a_cipher=make_cipher(mode, KEYS[mode]))
        r1.a.set_remote(HOST, a.port)
        r1.b.set_remote(HOST, tap.port)
        r2.a.set_remote(HOST, tap.port)
        r2.b.set_remote(HOST, b.port)
        middle: list[bytes] = []
        r1_b, r2_a = (HOST, r1.b.rtp_port), (HOST, r2.a.rtp_port)

        async def forward(n: int) -> None:
            for data, src in await tap.recv(n):
                middle.append(data)
                tap.send(data, r2_a if src == r1_b else r1_b)

        plain_ab = [rtp(i, payload(i)) for i in range(30)]
        for p in plain_ab:
            a.send(p, (HOST, r1.a.rtp_port))
        await forward(30)
        assert [d for d, _ in await b.recv(30)] == plain_ab
        plain_ba = [rtp(i, payload(i + 9, 80), ssrc=42) for i in range(30)]
        for p in plain_ba:
            b.send(p, (HOST, r2.b.rtp_port))
        await forward(30)
        assert [d for d, _ in await a.recv(30)] == plain_ba
        for seen, p in zip(middle, plain_ab + plain_ba, strict=True):
            assert len(seen) == len(p)
            assert seen[:12] == p[:12]
            assert seen[12:] != p[12:]
        for s in (r1, r2):
            await s.wait_closed()
        assert alloc_.in_use == 0
        for p_ in (a, b, tap):
            p_.close()

    run(body)


def test_malformed_counted_and_dropped() -> None:
    async def body() -> None:
        a, b = await peer(), await peer()
        s = await relay(alloc(44700))
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        good = rtp(1, payload(1))
        a.send(good, (HOST, s.a.rtp_port))  # latch first: later junk takes the fast path
        await b.recv()
        bad = [
            b"\x80\x00\x00",  # short
            bytes([0x40]) + good[1:],  # version 1
            bytes([0xC0]) + good[1:],  # version 3
            bytes([0x8F]) + good[1:12] + bytes(8),  # 15 CSRCs, 8 bytes after the header
            bytes([0x90]) + good[1:12] + b"\xbe\xde",  # extension header cut
            bytes([0x90]) + good[1:12] + b"\xbe\xde\x01\x00" + bytes(8),  # ext past end
        ]
        for d in bad:
            a.send(d, (HOST, s.a.rtp_port))
        # An empty datagram from the latched source (asyncio's sendto skips empty data).
        fd = os.dup(a.transport.get_extra_info("socket").fileno())
        with socket.socket(fileno=fd) as raw:
            raw.sendto(b"", (HOST, s.a.rtp_port))
        # RTCP ports drop junk too.
        a.send(b"\x00" * 3, (HOST, s.a.rtcp_port))
        a.send(good, (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == good
        assert await b.nothing(0.1)
        assert s.a.rx_malformed == len(bad) + 1
        assert s.a.rtcp_malformed == 1
        assert s.a.rx_packets == 2
        assert s.stats()["a_to_b"]["rx_malformed"] == len(bad) + 1
        s.close()
        a.close()
        b.close()

    run(body)


def test_latched_passthrough_is_relayed_in_c_and_counted() -> None:
    """Once both legs latched, the receive loop relays RTP in C, ciphers included: it
    never reaches the protocol, yet counts in the stats and ``last_rx``. RTCP on the RTP
    port and malformed packets still go through the protocol; a new SDP address takes
    the direction back."""
    async def body() -> None:
        a, b, moved = await peer(), await peer(), await peer()
        s = await relay(alloc(44800))
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        a.send(rtp(0, payload(0)), (HOST, s.a.rtp_port))
        await b.recv()
        assert s.a._fast_fd == -1  # b not latched yet: a's RTP goes through Python
        b.send(rtp(0, payload(0), ssrc=5), (HOST, s.b.rtp_port))
        await a.recv()
        assert s.a._rtp_sock is not None and s.b._rtp_sock is not None
        assert s.a._fast_fd == s.b._rtp_sock.fileno()
        assert s.b._fast_fd == s.a._rtp_sock.fileno()
        first = s.a.last_rx
        sent = [rtp(i, payload(i)) for i in range(1, 201)]
        for p in sent:
            a.send(p, (HOST, s.a.rtp_port))
        got = await b.recv(200)
        assert [d for d, _ in got] == sent
        assert {src for _, src in got} == {(HOST, s.b.rtp_port)}
        assert s.a.rx_packets == 1  # the attribute: only the latching packet was Python's
        stats = s.stats()["a_to_b"]
        assert stats["rx_packets"] == 201 and stats["forwarded"] == 201
        assert stats["rx_bytes"] == len(rtp(0, payload(0))) + sum(map(len, sent))
        assert s.a.last_rx is not None and first is not None and s.a.last_rx > first
        # RTCP multiplexed on the RTP port and a malformed packet: through the protocol.
        a.send(RTCP_RR, (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == RTCP_RR
        a.send(b"\x80\x00\x00", (HOST, s.a.rtp_port))
        a.send(rtp(300, payload(3)), (HOST, s.a.rtp_port))
        await b.recv()
        stats = s.stats()["a_to_b"]
        assert (stats["rtcp_packets"], stats["rx_malformed"], stats["rx_packets"]) == (1, 1, 202)
        # XOR toward b stays in C: the payload XORed with the key, both ways.
        xor = make_cipher(1, KEYS[1])
        s.b.set_cipher(xor)
        assert s.a._fast_fd == s.b._rtp_sock.fileno()
        assert [c.mode for c in s.a._fast_ciphers] == [1]
        plain = rtp(301, payload(4))
        a.send(plain, (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == xor.encrypt(plain) and d != plain
        b.send(xor.encrypt(plain), (HOST, s.b.rtp_port))
        (d, _), = await a.recv()
        assert d == plain
        # AES128 toward b, RC4 from a: still in C, deciphered then enciphered.
        aes, rc4 = make_cipher(3, KEYS[3]), make_cipher(2, KEYS[2])
        s.b.set_cipher(aes)
        s.a.set_cipher(rc4)
        assert [c.mode for c in s.a._fast_ciphers] == [2, 3]
        assert [c.mode for c in s.b._fast_ciphers] == [3, 2]
        a.send(rc4.encrypt(plain), (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == aes.encrypt(plain) and d != plain
        b.send(aes.encrypt(plain), (HOST, s.b.rtp_port))
        (d, _), = await a.recv()
        assert d == rc4.encrypt(plain)
        s.a.set_cipher(None)
        s.b.set_cipher(None)
        assert s.a._fast_fd == s.b._rtp_sock.fileno() and s.a._fast_ciphers == ()
        # A new SDP address for b: b must latch again before C relays toward it.
        s.b.set_remote(HOST, moved.port)
        assert s.a._fast_fd == -1 and s.b._fast_fd == -1
        a.send(plain, (HOST, s.a.rtp_port))
        (d, _), = await moved.recv()
        assert d == plain
        await s.wait_closed()
        stats = s.stats()["a_to_b"]
        assert stats["rx_packets"] == 205 and stats["rx_in_c"] == 203
        for p_ in (a, b, moved):
            p_.close()

    run(body)


@pytest.mark.parametrize("in_c", [True, False])
def test_ciphered_directions_in_c_or_in_python_give_the_same_bytes(in_c: bool) -> None:
    """``ciphers_in_c`` decides only where a ciphered direction runs: the packets on the
    wire are the same, and a direction without a cipher is relayed in C either way."""
    async def body() -> None:
        a, b = await peer(), await peer()
        rc4, aes = make_cipher(2, KEYS[2]), make_cipher(3, KEYS[3])
        s = await relay(alloc(45800), a_cipher=rc4, b_cipher=aes, ciphers_in_c=in_c)
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        plain = [rtp(i, payload(i)) for i in range(40)]
        a.send(rc4.encrypt(plain[0]), (HOST, s.a.rtp_port))
        b.send(aes.encrypt(plain[0]), (HOST, s.b.rtp_port))
        await b.recv()
        await a.recv()
        assert s.a.latched and s.b.latched
        in_c_fd = s.b._rtp_sock.fileno() if in_c else -1  # type: ignore[union-attr]
        assert s.a._fast_fd == in_c_fd
        for p in plain[1:]:
            a.send(rc4.encrypt(p), (HOST, s.a.rtp_port))
        got = [d for d, _ in await b.recv(39)]
        assert got == [aes.encrypt(p) for p in plain[1:]]
        stats = s.stats()["a_to_b"]
        assert stats["rx_packets"] == 40 and stats["rx_in_c"] == (39 if in_c else 0)
        s.a.set_cipher(None)
        s.b.set_cipher(None)
        assert s.a._fast_fd == s.b._rtp_sock.fileno()  # type: ignore[union-attr]
        await s.wait_closed()
        a.close()
        b.close()

    run(body)


def test_a_cipher_c_cannot_build_stays_in_python_said_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """As on a host whose libcrypto has no BLAKE2 (a FIPS-only configuration): RC4 legs
    keep their direction in Python, the same bytes, one warning for the process."""
    import b2bua.media.relay as relay_module

    def refuse(mode: int, key: bytes) -> Any:
        raise ValueError("libcrypto could not set up the cipher: unsupported")

    monkeypatch.setattr(relay_module, "NativeCipher", refuse)
    monkeypatch.setattr(relay_module, "_said_in_python", set())

    async def body() -> None:
        rc4 = make_cipher(2, KEYS[2])
        for base in (46800, 46900):  # two calls
            a, b = await peer(), await peer()
            s = await relay(alloc(base), a_cipher=rc4)
            s.a.set_remote(HOST, a.port)
            s.b.set_remote(HOST, b.port)
            a.send(rc4.encrypt(rtp(0, payload(0))), (HOST, s.a.rtp_port))
            b.send(rtp(0, payload(0)), (HOST, s.b.rtp_port))
            await b.recv()
            await a.recv()
            assert s.a._fast_fd == -1 and s.b._fast_fd == -1  # both directions ciphered
            a.send(rc4.encrypt(rtp(1, payload(1))), (HOST, s.a.rtp_port))
            (d, _), = await b.recv()
            assert d == rtp(1, payload(1))
            await s.wait_closed()
            a.close()
            b.close()

    with caplog.at_level("WARNING", logger="b2bua.media.relay"):
        run(body)
    said = [r.getMessage() for r in caplog.records if "stay in Python" in r.getMessage()]
    assert said == ["relay: RC4 ciphers stay in Python: libcrypto could not set up the "
                    "cipher: unsupported"]


def test_packets_a_cipher_failed_on_in_c_are_dropped_counted_and_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import b2bua.media.relay as relay_module

    monkeypatch.setattr(relay_module, "_cipher_errors_said_at", [-3600.0])

    async def body() -> None:
        a, b = await peer(), await peer()
        aes = make_cipher(3, KEYS[3])
        s = await relay(alloc(47000), b_cipher=aes)
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        a.send(rtp(0, payload(0)), (HOST, s.a.rtp_port))
        b.send(aes.encrypt(rtp(0, payload(0))), (HOST, s.b.rtp_port))
        await b.recv()
        await a.recv()
        native = s.b.native_cipher()
        assert native is not None and s.a._fast_fd >= 0
        native._inject_failures(3)
        for i in range(1, 6):
            a.send(rtp(i, payload(i)), (HOST, s.a.rtp_port))
        got = [d for d, _ in await b.recv(2)]
        assert got == [aes.encrypt(rtp(i, payload(i))) for i in (4, 5)]
        assert await b.nothing()
        stats = s.stats()["a_to_b"]
        assert (stats["cipher_errors"], stats["rx_packets"]) == (3, 3)
        await s.wait_closed()
        a.close()
        b.close()

    with caplog.at_level("WARNING", logger="b2bua.media.relay"):
        run(body)
    assert any("3 packets dropped: a cipher failed" in r.getMessage() for r in caplog.records)


def test_on_rtp_start_fires_once_for_destination_leg() -> None:
    async def body() -> None:
        a, b = await peer(), await peer()
        fired: list[int] = []
        s = await relay(alloc(44800), on_rtp_start=lambda: fired.append(1))
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        for i in range(5):
            a.send(rtp(i, payload(i)), (HOST, s.a.rtp_port))
        await b.recv(5)
        assert fired == [] and s.rtp_started_at is None  # the caller's RTP does not count
        for i in range(10):
            b.send(rtp(i, payload(i)), (HOST, s.b.rtp_port))
        await a.recv(10)
        assert fired == [1]
        assert s.rtp_started_at == s.b.first_rtp_at
        s.b.set_remote(HOST, a.port)  # a new SDP re-opens latching, not the callback
        b.send(rtp(11, payload(11)), (HOST, s.b.rtp_port))
        await asyncio.sleep(0.1)
        assert fired == [1]
        s.close()
        a.close()
        b.close()

    run(body)


def test_on_rtp_start_exception_does_not_break_relay() -> None:
    async def body() -> None:
        a, b = await peer(), await peer()

        def boom() -> None:
            raise RuntimeError("callback failure")

        s = await relay(alloc(44900), on_rtp_start=boom, start_leg="a")
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        a.send(rtp(1, payload(1)), (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == rtp(1, payload(1))
        s.close()
        a.close()
        b.close()

    run(body)


def test_hold_and_no_peer_are_counted() -> None:
    async def body() -> None:
        a, b = await peer(), await peer()
        s = await relay(alloc(45900))
        s.a.set_remote(HOST, a.port)
        s.b.set_remote("0.0.0.0", b.port)  # on hold: B takes no media
        assert s.b.remote is None
        a.send(rtp(1, payload(1)), (HOST, s.a.rtp_port))
        await asyncio.sleep(0.1)
        assert s.a.no_peer == 1 and s.stats()["a_to_b"]["forwarded"] == 0
        assert await b.nothing(0.05)
        s.b.set_remote(HOST, b.port)  # resumed
        a.send(rtp(2, payload(2)), (HOST, s.a.rtp_port))
        (d, _), = await b.recv()
        assert d == rtp(2, payload(2))
        with pytest.raises(ValueError, match="not an IP address"):
            s.b.set_remote("gw.example.com", 5000)
        with pytest.raises(ValueError, match="family"):
            s.b.set_remote("::1", 5000)
        assert s.b.remote == b.addr  # a refused address changes nothing
        s.close()
        a.close()
        b.close()

    run(body)


# -- the inline header check agrees with rtp.payload_offset ---------------------------------

class _Sink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=64))
@example(RTCP_RR)
@example(RTCP_RR + bytes(3))
@example(b"")
def test_fast_path_agrees_with_parser(data: bytes) -> None:
    s = RelaySession(PortAllocator(50000, 50003), HOST)
    sink = _Sink()
    leg = s.a
    leg.src = ("127.0.0.1", 1000)
    leg.latched = True
    leg.rtp_proto.out = sink
    leg.rtp_proto.dst = ("127.0.0.1", 2000)
    leg.rtp_proto.datagram_received(data, ("127.0.0.1", 1000))
    relayed = payload_offset(data) is not None or is_rtcp(data)
    assert sink.sent == ([data] if relayed else [])
    assert leg.rx_malformed == (0 if relayed else 1)


def test_unconnected_send_sheds_on_a_full_buffer_and_counts_errors() -> None:
    """Toward a peer not latched yet the packet goes out with ``sendto`` on the other
    leg's non-blocking socket: a full send buffer drops it (send_dropped) instead of
    queueing media without bound, another error counts in send_errors."""
    class Sock:
        def __init__(self) -> None:
            self.error: OSError | None = BlockingIOError(11, "full")
            self.sent: list[bytes] = []

        def sendto(self, data: bytes, addr: Any) -> None:
            if self.error is not None:
                raise self.error
            self.sent.append(data)

    s = RelaySession(PortAllocator(50000, 50003), HOST)
    sock = Sock()
    s.a.src = ("127.0.0.1", 1000)
    s.a.latched = True
    s.a.rtp_proto.out = _RtpSender(s.b, sock)  # type: ignore[arg-type]
    s.a.rtp_proto.dst = ("127.0.0.1", 2000)
    packet = rtp(1, payload(1))
    for _ in range(3):
        s.a.rtp_proto.datagram_received(packet, ("127.0.0.1", 1000))
    assert sock.sent == [] and s.b.send_dropped == 3
    assert s.stats()["b_to_a"]["send_dropped"] == 3 and s.a.rx_packets == 3
    sock.error = ConnectionRefusedError(111, "refused")
    s.a.rtp_proto.datagram_received(packet, ("127.0.0.1", 1000))
    assert s.b.send_errors == 1
    sock.error = None
    s.a.rtp_proto.datagram_received(packet, ("127.0.0.1", 1000))
    assert sock.sent == [packet]


def test_connected_send_sheds_on_a_full_buffer_and_counts_errors() -> None:
    """Toward a latched (connected) peer the packet goes out with ``send``: a full send
    buffer drops it (send_dropped), an ICMP error reported on the socket counts in
    send_errors; neither escapes."""
    s = RelaySession(PortAllocator(50000, 50003), HOST)
    sent: list[bytes] = []
    error: list[OSError | None] = [BlockingIOError(11, "full")]

    def send(data: bytes) -> None:
        if error[0] is not None:
            raise error[0]
        sent.append(data)

    s.a.src = ("127.0.0.1", 1000)
    s.a.latched = True
    s.a.rtp_proto.dst = ("127.0.0.1", 2000)
    s.a.rtp_proto.send = send
    packet = rtp(1, payload(1))
    for _ in range(3):
        s.a.rtp_proto.datagram_received(packet, ("127.0.0.1", 1000))
    assert sent == [] and s.b.send_dropped == 3 and s.b.send_errors == 0
    error[0] = ConnectionRefusedError(111, "refused")
    s.a.rtp_proto.datagram_received(packet, ("127.0.0.1", 1000))
    assert s.b.send_errors == 1 and s.a.rx_packets == 4
    error[0] = None
    s.a.rtp_proto.datagram_received(packet, ("127.0.0.1", 1000))
    assert sent == [packet]


def test_closed_session_is_freed_without_the_garbage_collector() -> None:
    """Relay sessions are created and dropped at call rate: a closed one must go by
    reference counting alone (cycles would wait for, and lengthen, the GC's pauses)."""
    import gc
    import weakref

    async def body() -> None:
        a, b = await peer(), await peer()
        allocator = alloc(45000)
        fired: list[int] = []
        s = await relay(allocator, on_rtp_start=lambda: fired.append(1),
                        b_cipher=make_cipher(3, KEYS[3]))
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        for i in range(3):
            a.send(rtp(i, payload(i)), (HOST, s.a.rtp_port))
            b.send(rtp(i, payload(i)), (HOST, s.b.rtp_port))
        await a.recv(3)
        await b.recv(3)
        assert fired == [1]
        refs = [weakref.ref(o) for o in (s, s.a, s.b, s.a.rtp_proto, s.b.rtcp_proto)]
        await s.wait_closed()
        stats = s.stats()  # still readable after close
        assert stats["a_to_b"]["rx_packets"] == 3 and stats["b_to_a"]["rx_packets"] == 3
        gc.disable()
        try:
            del s
            await asyncio.sleep(0.05)  # let the loop drop the closed transports
            assert [r() is None for r in refs] == [True] * len(refs)
        finally:
            gc.enable()
        assert allocator.in_use == 0
        a.close()
        b.close()

    run(body)


def test_rtp_before_the_other_legs_first_sdp_waits_for_it() -> None:
    """A relay worker may see the first RTP a moment before the SDP answer's address:
    up to EARLY_PACKETS wait and go out (through the cipher) once it is known; after
    that, or on hold, nothing is kept."""
    from b2bua.media.relay import EARLY_PACKETS

    async def body() -> None:
        a, b = await peer(), await peer()
        s = await relay(alloc(46200), b_cipher=make_cipher(1, KEYS[1]))
        s.a.set_remote(HOST, a.port)
        for i in range(EARLY_PACKETS + 2):
            a.send(rtp(i, payload(i)), (HOST, s.a.rtp_port))
        await asyncio.sleep(0.1)
        assert s.a.rx_packets == EARLY_PACKETS + 2 and s.a.no_peer == 2
        s.b.set_remote(HOST, b.port)
        got = await b.recv(EARLY_PACKETS)
        xor = make_cipher(1, KEYS[1])
        assert [xor.apply(d, 12) for d, _ in got] == [rtp(i, payload(i))
                                                      for i in range(EARLY_PACKETS)]
        assert s.stats()["a_to_b"]["forwarded"] == EARLY_PACKETS
        s.b.set_remote("0.0.0.0", 0)  # hold: no longer kept for later
        a.send(rtp(99, payload(99)), (HOST, s.a.rtp_port))
        await asyncio.sleep(0.05)
        s.b.set_remote(HOST, b.port + 0)
        s.b.set_remote(HOST, b.port)
        assert await b.nothing(0.1)
        s.close()
        a.close()
        b.close()

    run(body)


def test_rtp_before_its_own_legs_first_sdp_is_vetted_once_it_comes() -> None:
    """A worker may read the caller's first RTP before the message with the caller's own
    SDP: up to EARLY_PACKETS are kept and checked once the SDP is known (the SDP's IP
    latches and is relayed, another IP is foreign); beyond that they count as foreign."""
    from b2bua.media.relay import EARLY_PACKETS

    async def body() -> None:
        a, b, stranger = await peer(), await peer(), await peer("127.0.0.9")
        s = await relay(alloc(46300))
        stranger.send(rtp(500, payload(500)), (HOST, s.a.rtp_port))
        for i in range(3):
            a.send(rtp(i, payload(i)), (HOST, s.a.rtp_port))
        await asyncio.sleep(0.1)
        assert s.a.rx_foreign == 0 and s.a.rx_packets == 0
        s.a.set_remote(HOST, a.port)
        s.b.set_remote(HOST, b.port)
        got = await b.recv(3)
        assert [d for d, _ in got] == [rtp(i, payload(i)) for i in range(3)]
        assert s.a.rx_foreign == 1 and s.a.rx_packets == 3 and s.a.src == (HOST, a.port)
        assert s.a.unvetted is None

        s2 = await relay(alloc(46400))
        for i in range(EARLY_PACKETS + 3):
            stranger.send(rtp(i, payload(i)), (HOST, s2.a.rtp_port))
        await asyncio.sleep(0.1)
        assert s2.a.rx_foreign == 3
        s2.a.set_remote(HOST, a.port)
        assert s2.a.rx_foreign == EARLY_PACKETS + 3 and s2.a.rx_packets == 0
        s.close()
        s2.close()
        for p in (a, b, stranger):
            p.close()

    run(body)


def test_close_while_starting_releases_the_ports() -> None:
    """A call cancelled while its relay session binds: start() fails, nothing is left
    bound or allocated, and no packet reaches a protocol cut from its leg."""
    async def body() -> None:
        allocator = alloc(44950)
        s = RelaySession(allocator, HOST)
        starting = asyncio.ensure_future(s.start())
        for _ in range(20):  # until the first leg's bind is under way
            await asyncio.sleep(0)
            if s.a.rtp_port or starting.done():
                break
        s.close()
        with pytest.raises(RuntimeError):
            await starting
        await asyncio.sleep(0.05)
        assert s.released and allocator.in_use == 0

    run(body)
