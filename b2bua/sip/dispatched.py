"""A signalling worker's UDP: datagrams arrive from the dispatcher, replies leave from
the SIP socket itself.

With several signalling workers (``docs/scaling.md``) no worker reads the SIP UDP
socket: the dispatcher thread (:mod:`b2bua.sip._dispatch`) does, and passes each
datagram over the worker's socketpair, prefixed by ``"<source ip> <source port>\\n"``.
Every worker holds the SIP socket too, and sends on it, so what it sends leaves from
the advertised address and port with no second hop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Any

from b2bua.sip.transport import UdpTransport, enlarge_buffers

log = logging.getLogger("b2bua.sip.dispatched")

READ_BATCH = 64  # datagrams taken per wake-up before the event loop runs anything else
CHANNEL_BUFFER = 8 << 20  # queued datagrams per worker, in bytes, before drops


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
    listen_tcp: bool  # worker 0 only
    counts_fd: int  # the shared memory of the call counters (b2bua/calls/counts.py)
    security_fd: int  # ... and of failure counts and suspensions (b2bua/security/state.py)


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
    it had come from the SIP socket."""

    def __init__(self, channel: socket.socket, udp: UdpTransport) -> None:
        self.channel = channel
        self.udp = udp
        self.malformed = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.channel.fileno(), self.drain)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.channel.fileno())

    def drain(self) -> None:
        recv = self.channel.recv
        deliver = self.udp.datagram_received
        for _ in range(READ_BATCH):
            try:
                data = recv(70000)
            except BlockingIOError:
                return
            except OSError:
                log.exception("dispatcher channel failed")
                return
            head, _, payload = data.partition(b"\n")
            host, _, port = head.partition(b" ")
            try:
                deliver(payload, (host.decode("ascii"), int(port)))
            except ValueError:
                self.malformed += 1
