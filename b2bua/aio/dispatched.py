"""A signalling worker's UDP: datagrams arrive from the dispatcher, replies leave from
the SIP socket itself.

With several signalling workers (``docs/scaling.md``) no worker reads the SIP UDP
socket: the dispatcher thread (:mod:`b2bua.sip._dispatch`) does, and passes each
datagram over the worker's socketpair as one :mod:`b2bua.ipc` frame,
``["udp", source ip, source port, datagram]``. Every message on a channel, either way,
is one such frame of four: ``[op, host, port, bytes]``, one per datagram.
Every worker holds the SIP socket too, and sends on it, so what it sends leaves from
the advertised address and port with no second hop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from b2bua import ipc
from b2bua.aio.transport import (
    MessageHandler,
    TcpTransport,
    TransportStats,
    UdpTransport,
    enlarge_buffers,
)
from b2bua.sip._dispatch import route
from b2bua.sip.peer import Peer

log = logging.getLogger("b2bua.aio.dispatched")

READ_BATCH = 64  # datagrams taken per wake-up before the event loop runs anything else
CHANNEL_BUFFER = 8 << 20  # queued datagrams per worker, in bytes, before drops
CHANNEL = "signalling worker channel"
MAX_DATAGRAM = 70000  # a whole UDP datagram (64 KiB at most) and its frame's head


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """The dispatcher's end and the worker's end of one worker's channel."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (ours, theirs):
        enlarge_buffers(sock, CHANNEL_BUFFER)
    ours.setblocking(False)
    theirs.setblocking(False)
    return ours, theirs


@dataclass(frozen=True)
class DispatchedSip:
    """What a signalling worker reads and sends SIP UDP with."""

    sip_socket: socket.socket  # shared: sent on, never read
    channel: socket.socket  # the worker's end of its channel from the dispatcher
    # Worker 0, which listens on TCP and holds every connection: the others' channels,
    # for their TCP. None in the others.
    tcp_for: list[socket.socket] | None
    counts_fd: int  # the shared memory of the call counters (b2bua/calls/counts.py)
    security_fd: int  # ... and of failure counts and suspensions (b2bua/security/state.py)
    nonces_fd: int  # ... and of digest nonce counts (b2bua/security/digest.py)
    nonce_key: bytes  # one key for every worker's nonces


class SipSocketTransport(asyncio.DatagramTransport):
    """Sends on the shared SIP socket; never reads it (the dispatcher does)."""

    def __init__(self, sock: socket.socket, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self.sock = sock
        self.sock.setblocking(False)
        self.protocol = protocol
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:
            # A full send buffer or an ICMP error queued for the socket: UDP loses the
            # datagram (counted there), and the transaction's retransmission covers it.
            self.protocol.error_received(exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        if name == "sockname":
            return self.sock.getsockname()
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True


class ChannelReceiver:
    """Reads a worker's channel and hands each datagram to the UDP transport above, as if
    it had come from the SIP socket; a message worker 0 received over TCP for this worker
    (op ``tcp``) goes to ``on_tcp``, with the TCP peer as its source."""

    def __init__(self, channel: socket.socket, udp: UdpTransport, on_tcp: MessageHandler
                 ) -> None:
        self.channel = channel
        self.udp = udp
        self.on_tcp = on_tcp
        self.malformed = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.channel.fileno(), self.drain)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.channel.fileno())

    def drain(self) -> None:
        deliver = self.udp.datagram_received
        for op, host, port, payload in _read_batch(self.channel, self._refuse):
            if op == "udp":
                deliver(payload, (host, port))
            elif op == "tcp":
                self.on_tcp(payload, Peer("tcp", host, port))
            else:
                self._refuse(f"unknown op {op!r}")

    def _refuse(self, reason: str) -> None:
        self.malformed += 1
        _refused(reason)


# TCP with several workers: worker 0 holds every TCP connection (it alone listens, and it
# opens the outgoing ones). A message it receives over TCP whose Call-ID is another
# worker's goes to that worker's channel, marked ``tcp``; what the other workers send
# over TCP, and their trust decisions about a connection, come back to worker 0 on the
# same channel (a socketpair carries both ways) as ``[op, host, port, message]``.


class TcpThroughWorker0:
    """A worker's TCP when it is not worker 0: every operation is posted to worker 0."""

    def __init__(self, channel: socket.socket, stats: TransportStats) -> None:
        self.channel = channel
        self.stats = stats

    def send(self, data: bytes, host: str, port: int) -> None:
        self._post("send", host, port, data)

    def trust(self, host: str, port: int) -> None:
        self._post("trust", host, port)

    def close_untrusted(self, host: str, port: int) -> None:
        self._post("close", host, port)

    async def close(self) -> None:
        pass  # the connections are worker 0's

    def _post(self, op: str, host: str, port: int, data: bytes = b"") -> None:
        try:
            self.channel.send(ipc.encode([op, host, port, data]))
        except OSError:
            self.stats.send_errors += 1  # worker 0 not reading: as a lost datagram


class TcpForWorkers:
    """Worker 0's side: passes TCP messages to the worker their Call-ID routes to, and
    carries out what the other workers post."""

    def __init__(self, channels: list[socket.socket], tcp: TcpTransport) -> None:
        self.channels = channels  # the dispatcher's ends; index 0 unused
        self.tcp = tcp
        self.malformed = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        for index in range(1, len(self.channels)):
            loop.add_reader(self.channels[index].fileno(), self.drain, index)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        for index in range(1, len(self.channels)):
            loop.remove_reader(self.channels[index].fileno())

    def pass_on(self, data: bytes, source: Peer) -> bool:
        """True when the message is another worker's (and was sent to it)."""
        target = route(data, len(self.channels))
        if target == 0:
            return False
        try:
            self.channels[target].send(ipc.encode(["tcp", source.host, source.port, data]))
        except OSError:
            self.tcp.stats.send_errors += 1
        return True

    def drain(self, index: int) -> None:
        for op, host, port, payload in _read_batch(self.channels[index], self._refuse):
            if op == "send":
                self.tcp.send(payload, host, port)
            elif op == "trust":
                self.tcp.trust(host, port)
            elif op == "close":
                self.tcp.close_untrusted(host, port)
            else:
                self._refuse(f"unknown op {op!r}")

    def _refuse(self, reason: str) -> None:
        self.malformed += 1
        _refused(reason)


Message = tuple[str, str, int, bytes]


def _read_batch(channel: socket.socket, refuse: Callable[[str], None]) -> Iterator[Message]:
    """Up to READ_BATCH messages waiting on a channel. One that is not a frame of
    ``[op, host, port, bytes]`` is refused (counted, logged) and dropped: a datagram
    channel has no stream to lose sync with, so the next one is read as usual."""
    for _ in range(READ_BATCH):
        try:
            data = channel.recv(MAX_DATAGRAM)
        except BlockingIOError:
            return
        except OSError:
            log.exception("signalling worker channel failed")
            return
        try:
            op, host, port, payload = ipc.decode(data, MAX_DATAGRAM)
        except (ipc.FrameError, ValueError, TypeError) as exc:  # not four things
            refuse(str(exc))
            continue
        if (type(op) is not str or type(host) is not str or type(port) is not int
                or type(payload) is not bytes):
            refuse("a message of the wrong types")
            continue
        yield op, host, port, payload


def _refused(reason: str) -> None:
    ipc.malformed[CHANNEL] += 1
    log.warning("%s: %s; dropped", CHANNEL, reason)
