"""UDP and TCP transports: bytes in and out, framing, connection reuse, idle timeout.

Transports know nothing of SIP beyond framing: every complete message goes to the
``on_message`` callback with the peer it came from. Nothing is ever answered here,
so the policy stage above decides whether a source hears anything at all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from b2bua.sip.errors import SipParseError
from b2bua.sip.parser import MAX_MESSAGE_SIZE, StreamFramer
from b2bua.sip.peer import Peer

log = logging.getLogger("b2bua.aio.transport")

TCP_IDLE_TIMEOUT = 300.0
TCP_CONNECT_TIMEOUT = 5.0
TCP_MAX_CONNECTIONS = 10000


MessageHandler = Callable[[bytes, Peer], None]
# A copy of each message as it goes on or comes off the wire (the HEP export):
# (sent, bytes, transport, remote host, remote port).
Tap = Callable[[bool, bytes, str, str, int], None]


@dataclass
class TransportStats:
    received: int = 0
    sent: int = 0
    oversize: int = 0
    framing_errors: int = 0
    send_errors: int = 0
    tcp_connections: int = 0
    tcp_refused: int = 0


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(self, on_message: MessageHandler, stats: TransportStats,
                 max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.on_message = on_message
        self.stats = stats
        self.max_size = max_size
        self.transport: asyncio.DatagramTransport | None = None
        self.on_name: Callable[[bytes, str, int], None] | None = None
        self.tap: Tap | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's; they implement the same API.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.stats.received += 1
        if len(data) > self.max_size:
            self.stats.oversize += 1
            return
        if len(data) <= 4 and not data.strip():
            return  # CRLF keep-alive (RFC 5626) or an empty datagram
        if self.tap is not None:
            self.tap(False, data, "udp", str(addr[0]), int(addr[1]))
        self.on_message(data, Peer("udp", str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a vanished peer; the transaction timers handle it.
        self.stats.send_errors += 1

    def send(self, data: bytes, host: str, port: int) -> None:
        if self.transport is None:
            return
        try:
            self.transport.sendto(data, (host, port))
        except ValueError:
            # A name, not an address (a vendor's Contact or Record-Route given by DNS
            # name): the loop never resolves here. ``on_name`` resolves it and sends
            # (no cost on the path of every datagram to an address).
            if self.on_name is not None:
                self.on_name(data, host, port)
                return
            self.stats.send_errors += 1
            log.warning("not sent to %s:%s: not an IP address", host, port)
            return
        self.stats.sent += 1
        if self.tap is not None:
            self.tap(True, data, "udp", host, port)


class TcpConnection(asyncio.Protocol):
    def __init__(self, manager: TcpTransport, outbound: bool) -> None:
        self.manager = manager
        self.outbound = outbound
        self.framer = StreamFramer(manager.max_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.last_activity = time.monotonic()
        # Outbound connections are ours; inbound ones earn trust with an authorised request.
        self.trusted = outbound

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("tcp", str(host), int(port))
        if not self.manager.register(self):
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            messages = self.framer.feed(data)
        except SipParseError:
            # Oversize or unframeable stream: nothing can be resynchronised, so close.
            self.manager.stats.framing_errors += 1
            self.close()
            return
        assert self.peer is not None
        tap = self.manager.tap
        for raw in messages:
            self.manager.stats.received += 1
            if tap is not None:
                tap(False, raw, "tcp", self.peer.host, self.peer.port)
            self.manager.on_message(raw, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.manager.unregister(self)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.last_activity = time.monotonic()
            self.manager.stats.sent += 1
            self.transport.write(data)
            tap = self.manager.tap
            if tap is not None and self.peer is not None:
                tap(True, data, "tcp", self.peer.host, self.peer.port)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, discarding anything queued: nothing more reaches the peer."""
        if self.transport is not None:
            self.transport.abort()


class TcpTransport:
    """Listening socket plus a table of live connections keyed by peer address.

    A request to a peer reuses a connection to that address, in either direction,
    before opening a new one; responses go back on the connection the request came on.
    """

    def __init__(self, on_message: MessageHandler, stats: TransportStats,
                 max_size: int = MAX_MESSAGE_SIZE, idle_timeout: float = TCP_IDLE_TIMEOUT
                 ) -> None:
        self.on_message = on_message
        self.stats = stats
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.connections: dict[tuple[str, int], TcpConnection] = {}
        self._pending: dict[tuple[str, int], list[bytes]] = {}
        self._connecting: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.tap: Tap | None = None

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: TcpConnection(self, outbound=False), host, port, reuse_address=True
        )
        self._reaper = asyncio.ensure_future(self._reap_idle())

    def register(self, conn: TcpConnection) -> bool:
        if len(self.connections) >= TCP_MAX_CONNECTIONS:
            self.stats.tcp_refused += 1
            return False
        assert conn.peer is not None
        self.connections[(conn.peer.host, conn.peer.port)] = conn
        self.stats.tcp_connections += 1
        return True

    def unregister(self, conn: TcpConnection) -> None:
        if conn.peer is not None:
            key = (conn.peer.host, conn.peer.port)
            if self.connections.get(key) is conn:
                del self.connections[key]

    def trust(self, host: str, port: int) -> None:
        conn = self.connections.get((host, port))
        if conn is not None:
            conn.trusted = True

    def close_untrusted(self, host: str, port: int) -> None:
        conn = self.connections.get((host, port))
        if conn is not None and not conn.trusted:
            conn.abort()

    def send(self, data: bytes, host: str, port: int) -> None:
        key = (host, port)
        conn = self.connections.get(key)
        if conn is not None:
            conn.send(data)
            return
        queue = self._pending.get(key)
        if queue is not None:
            queue.append(data)
            return
        self._pending[key] = [data]
        task = asyncio.ensure_future(self._connect(host, port))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        key = (host, port)
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: TcpConnection(self, outbound=True), host, port),
                TCP_CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            self.stats.send_errors += 1
            log.info("tcp connect to %s:%d failed: %s", host, port, exc)
            self._pending.pop(key, None)
            return
        # The connection registered itself under the peer's address as reported by
        # the socket; queued messages go out on it in order.
        for data in self._pending.pop(key, []):
            proto.send(data)

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.idle_timeout / 2))
            cutoff = time.monotonic() - self.idle_timeout
            for conn in list(self.connections.values()):
                if conn.last_activity < cutoff:
                    conn.close()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.close()


# A SIP socket's default receive buffer (~208 KiB) holds well under a second of a busy
# switch's datagrams; a pause of the event loop (a full garbage collection) longer than
# that loses responses and turns into retransmissions and failed calls. 4 MiB holds
# seconds of traffic. As root the system limit does not apply (SO_RCVBUFFORCE).
SIP_SOCKET_BUFFER = 4 << 20
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def enlarge_buffers(sock: socket.socket | None, size: int = SIP_SOCKET_BUFFER) -> None:
    if sock is None:
        return
    for forced, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF),
                          (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, size)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
            except OSError:
                log.warning("could not enlarge a SIP socket's buffers")
