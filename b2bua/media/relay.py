"""The RTP/RTCP relay data plane: port allocation and two-legged relay sessions.

A :class:`RelaySession` anchors one media stream of a call: leg A faces one party (say
the caller), leg B the other. Each leg owns two UDP sockets on the relay host, an even
RTP port and RTP + 1 for RTCP, so a session uses four ports. What arrives on A's RTP
port from A's peer leaves from B's RTP port toward B's peer, and the other way round;
RTCP likewise on the +1 ports. Sending from the other leg's socket keeps symmetric RTP
working: each peer sees media coming from the very address it was told (in SDP) to send
to.

Latching and the anti-hijack rule (``docs/media.md`` has the long form). Per leg:

* ``set_remote(host, port)`` (from that party's SDP) sets where the leg's peer is sent
  media, until latching says otherwise. ``0.0.0.0`` or port 0 (hold) means "send
  nothing".
* The first well-formed RTP packet received on the leg from an *admissible* source
  latches the leg (with latching on, the session default): from then on the peer is sent
  to that source address and only that exact source (IP and port) is accepted on the
  leg; everything else is dropped: counted in ``rx_foreign`` until the latch, and from
  then on refused by the kernel, as the leg's RTP socket is connected to the latched
  source (which also lets the other direction ``send`` without an address). It latches
  once: no later packet can move it (no hijack by a third party spraying packets after
  the call is set up). A new, different SDP address (``set_remote``) re-opens latching.
* Admissible: any source when the leg is marked ``nat`` (NAT rewrites the IP, nothing
  can be checked); otherwise only a source with the SDP's IP (any port).
* With latching off, admissible sources are accepted and media still goes to the SDP
  address.
* RTCP latches on its own, by the same rule, from its first packet; until then RTCP goes
  to the latched RTP IP and RTP port + 1 (or, before any latching, to the SDP's a=rtcp
  address or RTP port + 1).

Ciphers (:mod:`b2bua.media.cipher`): a leg's ``cipher`` is what is on the wire between
the relay and that leg's peer. Packets received on an encrypted leg are decrypted and
packets sent to an encrypted leg are encrypted; the two transforms of a direction are
composed once per session (``None`` when both legs use no cipher or the same keystream,
which cancels out). RTCP is never touched.

The RTP sockets of all sessions of an event loop are read by one C receive loop
(:mod:`b2bua.media._pump`: epoll and ``recvmmsg``, one Python call per wake-up). Once
both legs are latched, a direction is relayed in C: well-formed RTP from the connected
peer goes out of the other leg's connected socket without reaching Python, its payload
deciphered and enciphered there by the legs' ciphers (``NativeCipher``, the same bytes as
:mod:`b2bua.media.cipher`; ``ciphers_in_c=False`` keeps ciphered directions in Python),
and is only counted (the counts are folded into the legs' counters whenever they are
read: :meth:`RelayLeg.sync`). Every other packet goes to the
leg's protocol here: one source comparison, the RTP header-length check inline,
counters, one timestamp, an optional precomputed transform and ``send`` on the other
leg's connected socket (``sendto`` toward a precomputed target until it is latched).
Anything unusual (first packet, foreign source, RTCP multiplexed on the RTP port,
malformed packet) takes a slower path. Malformed packets (short, version
not 2, CSRC list or header extension longer than the packet) are dropped and counted in
``rx_malformed``; nothing in the receive path raises on packet content.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import logging
import os
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from b2bua.media._pump import NativeCipher, Pump
from b2bua.media.cipher import PayloadCipher
from b2bua.media.rtp import is_rtcp, payload_offset

__all__ = [
    "PortAllocator",
    "PortExhausted",
    "RelayLeg",
    "RelaySession",
    "Transform",
]

log = logging.getLogger("b2bua.media.relay")

Address = tuple[Any, ...]  # (host, port) as the event loop reports it
Transform = Callable[[bytes, int], bytes]  # (packet, payload offset) -> packet

MAX_BIND_ATTEMPTS = 32  # ports tried per leg when the allocated one is taken by another process
EARLY_PACKETS = 16  # RTP kept per direction until the destination's first SDP is known
PUMP_BUDGET = 4096  # datagrams per wake-up of the receive loop before other work runs

_monotonic = time.monotonic
_libc = ctypes.CDLL(None, use_errno=True)


COUNTERS = ("rx_packets", "rx_bytes", "rx_malformed", "rx_foreign", "no_peer",
            "rtcp_packets", "rtcp_malformed", "rtcp_foreign", "send_errors", "send_dropped",
            "rx_in_c", "cipher_errors")


def counters_dict(values: tuple[int, ...]) -> dict[str, int]:
    """A leg's counters by name from :meth:`RelayLeg.counter_values`, plus ``forwarded``."""
    out = dict(zip(COUNTERS, values, strict=True))
    out["forwarded"] = out["rx_packets"] - out["no_peer"]
    return out


class PortExhausted(RuntimeError):
    """No free RTP/RTCP port pair left in the allocator's range."""


class PortAllocator:
    """Even RTP ports in ``[low, high]`` whose RTP + 1 (RTCP) is also in range.

    ``allocate()`` returns the RTP port of a free pair; ``release(port)`` gives it back.
    Free pairs are handed out least recently released first, so a port just freed is not
    reused at once (late packets of the previous call do not land in the next one).
    """

    def __init__(self, low: int, high: int) -> None:
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"bad RTP port range {low}-{high}")
        first = low + (low & 1)
        if first + 1 > high:
            raise ValueError(f"RTP port range {low}-{high} holds no even/odd port pair")
        self.low = low
        self.high = high
        self._free: deque[int] = deque(range(first, high, 2))
        self._used: set[int] = set()
        self.capacity = len(self._free)

    @property
    def in_use(self) -> int:
        return len(self._used)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocated(self) -> frozenset[int]:
        return frozenset(self._used)

    def allocate(self) -> int:
        if not self._free:
            raise PortExhausted(
                f"no free RTP port pair in {self.low}-{self.high} ({self.capacity} pairs in use)"
            )
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> bool:
        """Give a pair back; False (and no change) when ``port`` was not allocated."""
        if port not in self._used:
            return False
        self._used.remove(port)
        self._free.append(port)
        return True


def _unspecified(host: str) -> bool:
    return host in ("0.0.0.0", "::")


def _normalise_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError as exc:
        raise ValueError(f"media address {host!r} is not an IP address") from exc


def check_remote(relay_host: str, host: str, port: int,
                 rtcp_host: str | None = None) -> tuple[str, str]:
    """A peer's SDP media address, normalised, as ``set_remote`` accepts it: raises
    ``ValueError`` for a bad port, a non-IP host or one of the other address family.
    Shared by the relay and by the engine side of relay workers (which must refuse an
    address before sending it to a worker)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"bad RTP port {port}")
    host = _normalise_host(host)
    rtcp_host = host if rtcp_host is None else _normalise_host(rtcp_host)
    for h in (host, rtcp_host):
        if (":" in h) != (":" in relay_host):
            raise ValueError(
                f"media address {h} is not of the relay address family ({relay_host})"
            )
    return host, rtcp_host


_pumps: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pump] = (
    weakref.WeakKeyDictionary())


def _pump_for(loop: asyncio.AbstractEventLoop) -> Pump:
    """The event loop's receive loop over its relay sockets, watched by the loop."""
    pump = _pumps.get(loop)
    if pump is None:
        pump = Pump()
        loop.add_reader(pump.fileno(), pump.run, PUMP_BUDGET)
        _pumps[loop] = pump
    return pump


def _disconnect(sock: socket.socket) -> None:
    """Dissolve a UDP socket's association: ``connect`` to an ``AF_UNSPEC`` address,
    which Python's socket API cannot express."""
    addr = (ctypes.c_ubyte * 16)()  # sa_family 0: AF_UNSPEC
    if _libc.connect(sock.fileno(), addr, ctypes.sizeof(addr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class _RtpSender:
    """Sends out of a leg's RTP socket toward that leg's party. The socket does not
    block: a full send buffer drops the packet (``send_dropped``) instead of queueing
    media without bound; other errors (an ICMP unreachable reported on the socket) count
    in ``send_errors``."""

    __slots__ = ("leg", "sock")

    def __init__(self, leg: RelayLeg, sock: socket.socket) -> None:
        self.leg = leg
        self.sock = sock

    def sendto(self, data: bytes, addr: Address) -> None:
        try:
            self.sock.sendto(data, addr)
        except BlockingIOError:
            self.leg.send_dropped += 1
        except OSError:
            self.leg.send_errors += 1


class _Dropper:
    """Stands in for a leg's RTCP transport while its send buffer is over the high-water
    mark: packets toward that leg's party are dropped and counted instead of queued
    without bound."""

    __slots__ = ("leg",)

    def __init__(self, leg: RelayLeg) -> None:
        self.leg = leg

    def sendto(self, data: bytes, addr: Address) -> None:
        self.leg.send_dropped += 1


class _RtpProtocol:
    """Receives RTP on one leg (from the receive loop) and sends it out of the other
    leg's RTP socket."""

    def __init__(self, leg: RelayLeg) -> None:
        self.leg = leg
        self.out: Any = None  # the other leg's _RtpSender
        self.dst: Address | None = None  # the other leg's peer
        # The other leg's socket's ``send`` while that socket is connected to ``dst``
        # (its latched peer): no destination to convert, no per-packet route lookup.
        self.send: Callable[[bytes], object] | None = None
        self.xf: Transform | None = None  # decrypt-from-this-leg then encrypt-to-other
        # The same transform as ciphers for the C receive loop (None: not in C).
        self.c_ciphers: tuple[NativeCipher, ...] | None = ()
        # Packets that came before the other leg had any SDP address (None once it has):
        # the answer's address can reach a relay worker a moment after the first RTP.
        self.early: list[tuple[bytes, int]] | None = []

    def point(self, dst: Address | None) -> None:
        """The other leg's peer address is known (or on hold): send what waited for it."""
        self.dst = dst
        self.refresh_send()
        early, self.early = self.early, None
        if not early:
            return
        if dst is None or self.out is None:
            self.leg.no_peer += len(early)
            return
        for data, off in early:
            if self.xf is not None:
                data = self.xf(data, off)
            self.out.sendto(data, dst)

    def refresh_send(self) -> None:
        """Send with ``send()`` only while the other leg's socket is connected to ``dst``;
        relay in C (the receive loop) when, besides, this leg is latched and connected
        to its peer and its ciphers (if any) can be applied there."""
        send = None
        fast: socket.socket | None = None
        ciphers = self.c_ciphers
        leg = self.leg
        if self.dst is not None and self.out is not None:
            session = leg._session()
            if session is not None:
                other = session.b if leg is session.a else session.a
                if other.connected_to == self.dst and other._rtp_sock is not None:
                    send = other._rtp_sock.send
                    if (ciphers is not None and leg.latched and leg.connected_to is not None
                            and leg.connected_to == leg.src):
                        fast = other._rtp_sock
        self.send = send
        leg._forward(fast, ciphers or ())

    def _send_failed(self, exc: OSError) -> None:
        # A full send buffer sheds the packet (counted on the leg whose socket sent, as
        # flow control does); anything else is an error (an ICMP unreachable reported
        # on the connected socket).
        session = self.leg._session()
        if session is None:
            return
        other = session.b if self.leg is session.a else session.a
        if isinstance(exc, BlockingIOError):
            other.send_dropped += 1
        else:
            other.send_errors += 1

    def _no_peer(self, data: bytes, off: int) -> None:
        early = self.early
        if early is not None and len(early) < EARLY_PACKETS:
            early.append((data, off))
        else:
            self.leg.no_peer += 1

    def datagram_received(self, data: bytes, addr: Address) -> None:
        leg = self.leg
        if addr != leg.src:
            self._slow(data, addr)
            return
        n = len(data)
        if n < 12:
            self._slow(data, addr)  # malformed, or a short RTCP packet on the RTP port
            return
        b0 = data[0]
        off = 12 + ((b0 & 15) << 2)
        if b0 & 0x10:
            if n < off + 4:
                self._slow(data, addr)
                return
            off += 4 + (((data[off + 2] << 8) | data[off + 3]) << 2)
        if off > n or b0 & 0xC0 != 0x80 or 192 <= data[1] <= 223:
            self._slow(data, addr)  # malformed, or RTCP multiplexed on the RTP port
            return
        leg.last_rx = _monotonic()
        leg.rx_packets += 1
        leg.rx_bytes += n
        send = self.send
        if send is not None:
            xf = self.xf
            if xf is not None:
                data = xf(data, off)
            try:
                send(data)
            except OSError as exc:
                self._send_failed(exc)
            return
        dst = self.dst
        if dst is None:
            self._no_peer(data, off)
            return
        xf = self.xf
        if xf is not None:
            data = xf(data, off)
        self.out.sendto(data, dst)

    def _slow(self, data: bytes, addr: Address) -> None:
        leg = self.leg
        # A stream that is not RTP (T.38 UDPTL) has no header to check: all payload.
        off = payload_offset(data) if leg.session.rtp else len(data)
        if off is None:
            if is_rtcp(data) and (addr == leg.src or leg.admissible(addr)):
                # RTCP multiplexed on the RTP port (RFC 5761): relayed untouched.
                leg.rtcp_packets += 1
                if self.dst is not None:
                    self.out.sendto(data, self.dst)
            else:
                leg.rx_malformed += 1
            return
        if addr != leg.src and not leg._admit_rtp(addr):
            unvetted = leg.unvetted
            if unvetted is not None and len(unvetted) < EARLY_PACKETS:
                unvetted.append((data, addr))  # this leg's SDP may still be on its way
            else:
                leg.rx_foreign += 1
            return
        now = _monotonic()
        leg.last_rx = now
        leg.rx_packets += 1
        leg.rx_bytes += len(data)
        if leg.first_rtp_at is None:
            leg.first_rtp_at = now
            leg.session._first_rtp(leg)
        dst = self.dst
        if dst is None:
            self._no_peer(data, off)
            return
        if self.xf is not None:
            data = self.xf(data, off)
        self.out.sendto(data, dst)


class _RtcpProtocol(asyncio.DatagramProtocol):
    """Receives RTCP on one leg and sends it, untouched, out of the other leg's RTCP socket."""

    def __init__(self, leg: RelayLeg) -> None:
        self.leg = leg
        self.out: Any = None
        self.dst: Address | None = None

    def datagram_received(self, data: bytes, addr: Address) -> None:
        leg = self.leg
        if len(data) < 8 or data[0] & 0xC0 != 0x80 or not 192 <= data[1] <= 223:
            leg.rtcp_malformed += 1
            return
        if addr != leg.rtcp_src and not leg._admit_rtcp(addr):
            leg.rtcp_foreign += 1
            return
        leg.rtcp_packets += 1
        dst = self.dst
        if dst is not None:
            self.out.sendto(data, dst)

    def error_received(self, exc: Exception) -> None:
        self.leg.send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.leg._transport_lost()

    def pause_writing(self) -> None:
        self.leg.other.rtcp_proto.out = _Dropper(self.leg)

    def resume_writing(self) -> None:
        if self.leg._rtcp_transport is not None:
            self.leg.other.rtcp_proto.out = self.leg._rtcp_transport


class RelayLeg:
    """One side of a relay session: its two local ports, its peer, its cipher, counters.

    Counters are for what this leg *receives* from its peer (the direction
    this leg -> other leg): ``rx_packets`` / ``rx_bytes`` (well-formed RTP from an accepted
    source), ``rx_malformed``, ``rx_foreign`` (source not accepted), ``no_peer``
    (received but the other leg has nowhere to send), ``rtcp_packets``,
    ``rtcp_malformed``, ``rtcp_foreign``; ``send_errors`` counts errors reported on this
    leg's sockets, ``send_dropped`` packets toward this leg's party dropped because its
    socket's send buffer was full (flow control); ``rx_in_c`` is the part of
    ``rx_packets`` the C receive loop relayed, ``cipher_errors`` packets it dropped
    because a cipher failed on them. ``first_rtp_at`` / ``last_rx`` are
    ``time.monotonic()`` values of the first and latest accepted RTP packet (``None``
    before any).
    """

    def __init__(self, session: RelaySession, name: str, *, nat: bool = False,
                 cipher: PayloadCipher | None = None) -> None:
        # Weak: a leg must not keep its session alive, so a closed session is freed by
        # reference counting alone, without waiting for a garbage collection.
        self._session = weakref.ref(session)
        self.name = name
        self.nat = nat
        self.cipher: PayloadCipher | None = cipher
        self.rtp_port = 0
        self.rtcp_port = 0
        # From SDP.
        self.sdp_rtp: Address | None = None
        self.sdp_rtcp: Address | None = None
        # Accepted sources (fast path: exact match) and latching state.
        self.src: Address | None = None
        self.rtcp_src: Address | None = None
        self.latched = False
        self.rtcp_latched = False
        # Where this leg's peer is sent media (mirrored into the other leg's protocols).
        self.rtp_dst: Address | None = None
        self.rtcp_dst: Address | None = None
        # Counters and times.
        self.rx_packets = 0
        self.rx_bytes = 0
        self.rx_malformed = 0
        self.rx_foreign = 0
        self.no_peer = 0
        self.rtcp_packets = 0
        self.rtcp_malformed = 0
        self.rtcp_foreign = 0
        self.send_errors = 0
        self.send_dropped = 0
        self.rx_in_c = 0
        self.cipher_errors = 0
        self.first_rtp_at: float | None = None
        self.last_rx: float | None = None
        # RTP that came before this leg's first SDP address, which the relay needs to
        # vet the source: a relay worker can read a packet before the engine's message
        # with the SDP when both are waiting. Checked once that SDP is known (then None).
        self.unvetted: list[tuple[bytes, Address]] | None = []
        self.rtp_proto = _RtpProtocol(self)
        self.rtcp_proto = _RtcpProtocol(self)
        self._rtcp_transport: Any = None
        self._rtp_sock: socket.socket | None = None  # read by the receive loop
        self._rtp_sender: _RtpSender | None = None  # sends out of _rtp_sock
        self._pump: Pump | None = None
        self._slot = -1  # this leg's RTP socket in the receive loop
        self._fast_fd = -1  # the socket the receive loop relays this leg's RTP out of
        self._fast_ciphers: tuple[NativeCipher, ...] = ()  # and the ciphers it applies
        # This leg's cipher and its C form (None: C could not build it, kept in Python).
        self._native: tuple[PayloadCipher, NativeCipher | None] | None = None
        # The latched peer this leg's RTP socket is connect()-ed to (None: unconnected).
        self.connected_to: Address | None = None
        self._open = 0  # transports not yet reported lost
        self._allocator: PortAllocator | None = None  # set while holding a port pair

    # -- configuration -------------------------------------------------------------------

    def set_remote(self, host: str, port: int, rtcp_port: int | None = None,
                   rtcp_host: str | None = None) -> None:
        """The peer's media address from its SDP (c= and m= port; a=rtcp when present).

        ``0.0.0.0``/``::`` or port 0 means the peer takes no media (hold, disabled
        stream): nothing is sent to it until the next ``set_remote``. A different address
        than before re-opens latching; the same address keeps the latched one.
        Raises ``ValueError`` when ``host`` is not an IP address of the relay's family.
        """
        host, rtcp_host = check_remote(self.session.host, host, port, rtcp_host)
        if rtcp_port is None:
            rtcp_port = port + 1 if 0 < port < 65535 else 0
        if _unspecified(host) or port == 0:
            rtp: Address | None = None
        else:
            rtp = (host, port)
        if _unspecified(rtcp_host) or rtcp_port == 0 or rtp is None:
            rtcp: Address | None = None
        else:
            rtcp = (rtcp_host, rtcp_port)
        if rtp == self.sdp_rtp and rtcp == self.sdp_rtcp:
            # An SDP refresh with the same address (or a first SDP on hold): keep what
            # was latched; packets kept for the first SDP go out, or are dropped on hold.
            self.other.rtp_proto.point(self.rtp_dst)
        else:
            self.sdp_rtp = rtp
            self.sdp_rtcp = rtcp
            self.latched = False
            self.rtcp_latched = False
            self.src = None
            self._connect(None)
            self.rtcp_src = None
            self._set_rtp_dst(rtp)
            self._set_rtcp_dst(rtcp)
        unvetted, self.unvetted = self.unvetted, None
        for data, addr in unvetted or ():
            self.rtp_proto.datagram_received(data, addr)

    def set_cipher(self, cipher: PayloadCipher | None) -> None:
        """The cipher on the wire between the relay and this leg's peer (None: plain)."""
        self.cipher = cipher
        self.session._update_transforms()

    # -- state ---------------------------------------------------------------------------

    @property
    def remote(self) -> Address | None:
        """Where this leg's peer is currently sent RTP (latched or from SDP)."""
        return self.rtp_dst

    @property
    def remote_rtcp(self) -> Address | None:
        return self.rtcp_dst

    def sync(self) -> None:
        """Fold what the receive loop relayed on its own since the last call into the
        counters and ``last_rx``. Folding a leg also adds to the other leg's send
        counters, so readers of counters sync the session (:meth:`RelaySession.sync`)."""
        if self._pump is not None and self._slot >= 0:
            self._fold(self._pump.take(self._slot))

    def _fold(self, counted: tuple[int, int, int, int, int, int, float | None]) -> None:
        packets, octets, sock_errors, out_errors, out_dropped, cipher_errors, last_rx = counted
        self.rx_packets += packets
        self.rx_in_c += packets
        self.rx_bytes += octets
        if cipher_errors:
            self.cipher_errors += cipher_errors
            _say_cipher_errors(self.name, cipher_errors)
        self.send_errors += sock_errors
        if out_errors or out_dropped:
            other = self.other  # what failed was the send out of the other leg's socket
            other.send_errors += out_errors
            other.send_dropped += out_dropped
        if last_rx is not None and (self.last_rx is None or last_rx > self.last_rx):
            self.last_rx = last_rx

    def counter_values(self) -> tuple[int, ...]:
        """The counters in :data:`COUNTERS` order (compact, for relay workers' reports),
        as folded so far: call :meth:`RelaySession.sync` first for a live reading."""
        return (self.rx_packets, self.rx_bytes, self.rx_malformed, self.rx_foreign,
                self.no_peer, self.rtcp_packets, self.rtcp_malformed, self.rtcp_foreign,
                self.send_errors, self.send_dropped, self.rx_in_c, self.cipher_errors)

    def counters(self) -> dict[str, int]:
        """The counters by attribute name, plus ``forwarded`` (rx_packets - no_peer),
        live (the session synced first)."""
        session = self._session()
        if session is not None:
            session.sync()
        return counters_dict(self.counter_values())

    def silent_for(self, now: float | None = None) -> float | None:
        """Seconds since the last accepted RTP packet (None: none received yet)."""
        self.sync()
        if self.last_rx is None:
            return None
        return (_monotonic() if now is None else now) - self.last_rx

    def __repr__(self) -> str:
        return (f"<RelayLeg {self.name} ports={self.rtp_port}/{self.rtcp_port} "
                f"remote={self.rtp_dst} latched={self.latched} nat={self.nat}>")

    # -- internals -----------------------------------------------------------------------

    @property
    def session(self) -> RelaySession:
        session = self._session()
        if session is None:
            raise RuntimeError("relay session already freed")
        return session

    @property
    def other(self) -> RelayLeg:
        session = self.session
        return session.b if self is session.a else session.a

    def _connect(self, peer: Address | None) -> None:
        """Connect this leg's RTP socket to its latched peer (None: dissolve). The kernel
        then delivers only that peer's packets (the latch enforced below the relay) and
        the other leg's protocol sends to it with ``send``. If the kernel refuses, the
        leg stays unconnected and ``sendto`` carries on."""
        sock = self._rtp_sock
        if sock is None or sock.fileno() < 0 or peer == self.connected_to:
            return
        try:
            if peer is None:
                _disconnect(sock)
            else:
                sock.connect(peer)
            self.connected_to = peer
        except OSError as exc:
            log.warning("relay leg %s: %s %s failed: %s", self.name,
                        "disconnect" if peer is None else "connect to", peer, exc)
        # Either way the latch state changed: re-decide both directions (a leg no longer
        # latched must not stay relayed in C from its old peer).
        self.rtp_proto.refresh_send()
        self.other.rtp_proto.refresh_send()

    def native_cipher(self) -> NativeCipher | None:
        """This leg's cipher as the receive loop applies it (None: no cipher, or one the
        C library refused, which then stays in Python)."""
        cipher = self.cipher
        if cipher is None or cipher.identity:
            return None
        if self._native is None or self._native[0] is not cipher:
            native: NativeCipher | None = None
            try:
                native = NativeCipher(cipher.mode, cipher.key)
            except (ValueError, MemoryError) as exc:
                if cipher.mode not in _said_in_python:  # once a process, not once a call
                    _said_in_python.add(cipher.mode)
                    log.warning("relay: %s ciphers stay in Python: %s", cipher.name, exc)
            self._native = (cipher, native)
        return self._native[1]

    def _forward(self, out: socket.socket | None,
                 ciphers: tuple[NativeCipher, ...] = ()) -> None:
        """Have the receive loop relay this leg's RTP out of ``out``, applying
        ``ciphers`` to the payload in turn (None: every packet comes to the protocol)."""
        fd = -1 if out is None else out.fileno()
        if fd < 0:
            ciphers = ()
        if (fd, ciphers) == (self._fast_fd, self._fast_ciphers) or self._pump is None \
                or self._slot < 0:
            return
        try:
            self._pump.forward(self._slot, fd, ciphers)
        except OSError as exc:  # not connected after all: stay on the protocol
            log.warning("relay leg %s: no relaying in C: %s", self.name, exc)
            self._pump.forward(self._slot, -1)
            fd, ciphers = -1, ()
        self._fast_fd, self._fast_ciphers = fd, ciphers

    def _set_rtp_dst(self, dst: Address | None) -> None:
        self.rtp_dst = dst
        self.other.rtp_proto.point(dst)  # the other leg's protocol sends to this leg's peer

    def _set_rtcp_dst(self, dst: Address | None) -> None:
        self.rtcp_dst = dst
        self.other.rtcp_proto.dst = dst

    def admissible(self, addr: Address) -> bool:
        """May ``addr`` send on this leg? (Before latching: NAT leg any, else the SDP's IP.)"""
        if self.latched:
            return addr == self.src
        if self.nat:
            return True
        sdp = self.sdp_rtp
        return sdp is not None and addr[0] == sdp[0]

    def _admit_rtp(self, addr: Address) -> bool:
        # Called for a well-formed RTP packet from a source other than ``self.src``.
        if self.latched or not self.admissible(addr):
            return False
        self.src = addr
        if self.session.latching:
            self.latched = True
            self._connect(addr)
            self._set_rtp_dst(addr)
            if not self.rtcp_latched and isinstance(addr[1], int) and addr[1] < 65535:
                self._set_rtcp_dst((addr[0], addr[1] + 1, *addr[2:]))
        return True

    def _admit_rtcp(self, addr: Address) -> bool:
        if self.rtcp_latched:
            return False
        if not self.nat:
            ips = {a[0] for a in (self.sdp_rtp, self.sdp_rtcp, self.src) if a is not None}
            if addr[0] not in ips:
                return False
        self.rtcp_src = addr
        if self.session.latching:
            self.rtcp_latched = True
            self._set_rtcp_dst(addr)
        return True

    async def _bind(self, loop: asyncio.AbstractEventLoop, host: str,
                    allocator: PortAllocator, rcvbuf: int | None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        last_error: OSError | None = None
        for _ in range(MAX_BIND_ATTEMPTS):
            port = allocator.allocate()
            socks: list[socket.socket] = []
            try:
                for p in (port, port + 1):
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    socks.append(sock)
                    if rcvbuf:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                    sock.setblocking(False)
                    sock.bind((host, p))
            except OSError as exc:
                last_error = exc
                for sock in socks:
                    sock.close()
                allocator.release(port)
                continue
            rtcp_t = None
            try:
                pump = _pump_for(loop)
                rtcp_t, _ = await loop.create_datagram_endpoint(
                    lambda: self.rtcp_proto, sock=socks[1])
                slot = pump.add(socks[0].fileno(), self.rtp_proto.datagram_received)
            except BaseException:
                if rtcp_t is not None:
                    rtcp_t.abort()
                for sock in socks:
                    sock.close()
                allocator.release(port)
                raise
            self._slot = slot
            self._pump = pump
            self.rtp_port, self.rtcp_port = port, port + 1
            self._rtcp_transport = rtcp_t
            self._rtp_sock = socks[0]
            self._rtp_sender = _RtpSender(self, socks[0])
            self._open = 2
            self._allocator = allocator
            return
        raise PortExhausted(
            f"could not bind an RTP/RTCP pair on {host} after {MAX_BIND_ATTEMPTS} tries: "
            f"{last_error}"
        )

    def _close(self) -> None:
        pump, slot, sock = self._pump, self._slot, self._rtp_sock
        rtcp, self._rtcp_transport = self._rtcp_transport, None
        self._pump, self._slot, self._fast_fd, self._fast_ciphers = None, -1, -1, ()
        self._rtp_sock = self._rtp_sender = None
        # The receive loop holds descriptor numbers: the other leg's direction, which
        # sends out of this socket, goes back to Python before the socket closes.
        session = self._session()
        if session is not None and hasattr(self.other.rtp_proto, "leg"):
            self.other.rtp_proto.refresh_send()
        self.connected_to = None
        self.rtp_proto.out = self.rtcp_proto.out = None
        self.rtp_proto.dst = self.rtcp_proto.dst = None
        self.rtp_proto.send = None
        if pump is not None and slot >= 0:
            self._fold(pump.remove(slot))  # before the close: the loop never sees a reused fd
        if sock is not None:
            sock.close()
            self._transport_lost()
        if rtcp is not None:
            rtcp.close()  # connection_lost -> _transport_lost -> _release
        elif sock is None:
            self._release()

    def _transport_lost(self) -> None:
        self._open -= 1
        if self._open <= 0:
            self._release()

    def _release(self) -> None:
        # The port pair goes back only once both sockets are closed, so the next session
        # handed this pair can bind it.
        allocator, self._allocator = self._allocator, None
        if allocator is not None:
            allocator.release(self.rtp_port)
            session = self._session()
            if session is not None:
                session._leg_released()
        # Both sockets are gone, so no callback can reach the protocols again: cut their
        # back-references (leg <-> protocol cycles would otherwise wait for the GC).
        self.rtp_proto.send = None
        for proto in (self.rtp_proto, self.rtcp_proto):
            proto.out = proto.dst = None
            if hasattr(proto, "leg"):
                del proto.leg


class RelaySession:
    """Two relay legs, ``a`` and ``b``, for one media stream; four local UDP ports.

    ``rtp`` False makes it the relay of a stream that is not RTP (``m=image`` UDPTL for
    T.38 fax): every datagram from an admissible source is relayed as it is (and latches
    the leg), nothing is counted as malformed, and no cipher is applied (the call layer
    sets none on such a stream).

    ``on_rtp_start`` is called (once, with no arguments) when the first RTP packet is
    accepted on the leg named by ``start_leg`` ("b" by default: the destination side of
    a call). Exceptions from it are logged and swallowed.

    ``ciphers_in_c`` False keeps every ciphered direction in Python (``softswitch run
    --relay-ciphers python``): the same bytes on the wire, a Python call per packet.
    """

    def __init__(self, allocator: PortAllocator, host: str = "127.0.0.1", *,
                 advertised_host: str | None = None, latching: bool = True,
                 a_nat: bool = False, b_nat: bool = False,
                 a_cipher: PayloadCipher | None = None, b_cipher: PayloadCipher | None = None,
                 on_rtp_start: Callable[[], object] | None = None, start_leg: str = "b",
                 rcvbuf: int | None = None, ciphers_in_c: bool = True) -> None:
        if start_leg not in ("a", "b"):
            raise ValueError("start_leg must be 'a' or 'b'")
        self.allocator = allocator
        self.host = _normalise_host(host)
        self.advertised_host = advertised_host or self.host
        self.latching = latching
        self.on_rtp_start = on_rtp_start
        self.start_leg = start_leg
        self.rcvbuf = rcvbuf
        self.ciphers_in_c = ciphers_in_c
        self.rtp_started_at: float | None = None
        self.rtp = True
        self._released_waiter: asyncio.Future[None] | None = None
        self.started = False
        self.closed = False
        self._starting = False
        self.a = RelayLeg(self, "a", nat=a_nat, cipher=a_cipher)
        self.b = RelayLeg(self, "b", nat=b_nat, cipher=b_cipher)
        self._update_transforms()

    async def start(self) -> None:
        """Bind both legs' RTP/RTCP sockets. Raises ``PortExhausted`` when no pair is free."""
        if self.started or self.closed:
            raise RuntimeError("a relay session starts once")
        loop = asyncio.get_running_loop()
        self._starting = True
        try:
            await self.a._bind(loop, self.host, self.allocator, self.rcvbuf)
            await self.b._bind(loop, self.host, self.allocator, self.rcvbuf)
        except BaseException:
            self._starting = False
            self.closed = True
            self.on_rtp_start = None
            self.a._close()
            self.b._close()
            raise
        self._starting = False
        if self.closed:  # closed while binding: close() left the legs to this
            self.a._close()
            self.b._close()
            raise RuntimeError("relay session closed while it was starting")
        a, b = self.a, self.b
        a.rtp_proto.out, b.rtp_proto.out = b._rtp_sender, a._rtp_sender
        a.rtcp_proto.out, b.rtcp_proto.out = b._rtcp_transport, a._rtcp_transport
        a.rtp_proto.dst, b.rtp_proto.dst = b.rtp_dst, a.rtp_dst
        a.rtp_proto.refresh_send()
        b.rtp_proto.refresh_send()
        a.rtcp_proto.dst, b.rtcp_proto.dst = b.rtcp_dst, a.rtcp_dst
        self.started = True

    def close(self) -> None:
        """Close the four sockets; the ports go back to the allocator as the sockets finish
        closing (on the loop's next iteration: see :meth:`wait_closed`). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.on_rtp_start = None  # usually a bound method of the call: no cycle through it
        if self._starting:
            return  # a bind is awaiting: start() closes the legs when it ends
        self.a._close()
        self.b._close()

    @property
    def released(self) -> bool:
        """True once both legs' port pairs are back in the allocator."""
        return self.a._allocator is None and self.b._allocator is None

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Close, and wait (bounded) until the ports are back in the allocator."""
        self.close()
        if self.released:
            return
        loop = asyncio.get_running_loop()
        self._released_waiter = loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._released_waiter), timeout)
        finally:
            self._released_waiter = None

    def _leg_released(self) -> None:
        waiter = self._released_waiter
        if waiter is not None and self.released and not waiter.done():
            waiter.set_result(None)

    @property
    def ports(self) -> tuple[int, int]:
        """The RTP ports of legs a and b (RTCP is each + 1); 0 before ``start``."""
        return self.a.rtp_port, self.b.rtp_port

    def sync(self) -> None:
        """Fold what the receive loop counted on both legs (a leg's fold also updates the
        other leg's send counters, so both go before either is read)."""
        self.a.sync()
        self.b.sync()

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per direction: ``a_to_b`` is what leg a received and relayed toward b."""
        self.sync()
        return {"a_to_b": counters_dict(self.a.counter_values()),
                "b_to_a": counters_dict(self.b.counter_values())}

    def _first_rtp(self, leg: RelayLeg) -> None:
        if leg.name != self.start_leg or self.rtp_started_at is not None:
            return
        self.rtp_started_at = leg.first_rtp_at
        if self.on_rtp_start is not None:
            try:
                self.on_rtp_start()
            except Exception:
                log.exception("on_rtp_start callback failed")

    def _update_transforms(self) -> None:
        self.a.rtp_proto.xf = _compose(self.a.cipher, self.b.cipher)
        self.b.rtp_proto.xf = _compose(self.b.cipher, self.a.cipher)
        self.a.rtp_proto.c_ciphers = _c_ciphers(self.a, self.b, self.ciphers_in_c)
        self.b.rtp_proto.c_ciphers = _c_ciphers(self.b, self.a, self.ciphers_in_c)
        if self.started and not self.closed:
            self.a.rtp_proto.refresh_send()  # a cipher takes a direction back from C
            self.b.rtp_proto.refresh_send()

    def __enter__(self) -> RelaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_said_in_python: set[int] = set()  # modes whose cipher C could not build, logged once
_cipher_errors_said_at = [-3600.0]  # when dropped packets were last logged


def _say_cipher_errors(leg: str, dropped: int) -> None:
    """A warning for packets a cipher failed on in C, at most once a minute a process
    (they are counted in ``cipher_errors`` whatever is logged)."""
    now = _monotonic()
    if now - _cipher_errors_said_at[0] >= 60:
        _cipher_errors_said_at[0] = now
        log.warning("relay leg %s: %d packets dropped: a cipher failed on them in C "
                    "(counted in cipher_errors)", leg, dropped)


def _c_ciphers(rx: RelayLeg, tx: RelayLeg, in_c: bool) -> tuple[NativeCipher, ...] | None:
    """The transform of :func:`_compose` for the C receive loop: () for none, the
    receiving leg's and then the sending leg's cipher when they have one; None when the
    direction stays in Python (``in_c`` off, or a cipher C could not build)."""
    if _compose(rx.cipher, tx.cipher) is None:
        return ()  # no cipher, or the same keystream both ways
    if not in_c:
        return None
    ciphers = []
    for leg in (rx, tx):
        if leg.cipher is not None and not leg.cipher.identity:
            native = leg.native_cipher()
            if native is None:
                return None
            ciphers.append(native)
    return tuple(ciphers)


def _compose(rx: PayloadCipher | None, tx: PayloadCipher | None) -> Transform | None:
    """Decrypt with ``rx`` (the receiving leg's cipher), then encrypt with ``tx``."""
    if rx is not None and rx.identity:
        rx = None
    if tx is not None and tx.identity:
        tx = None
    if rx is None and tx is None:
        return None
    if rx is None:
        assert tx is not None
        return tx.apply
    if tx is None:
        return rx.apply
    if rx.same_keystream(tx):
        return None  # the same keystream XORed twice: the packet passes unchanged
    rx_apply, tx_apply = rx.apply, tx.apply

    def both(packet: bytes, offset: int) -> bytes:
        return tx_apply(rx_apply(packet, offset), offset)

    return both
