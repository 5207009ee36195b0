"""The SIP stack: transports, parsing, Via handling and transaction matching.

Everything that reaches the application has been parsed and matched; nothing is
sent back to a source unless the application asks, so the policy stage above can
stay silent toward unknown sources.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from b2bua.aio.dispatched import (
    ChannelReceiver,
    DispatchedSip,
    SipSocketTransport,
    TcpForWorkers,
    TcpThroughWorker0,
)
from b2bua.aio.timers import SweptTimers
from b2bua.aio.transport import (
    TcpTransport,
    TransportStats,
    UdpTransport,
    enlarge_buffers,
)
from b2bua.ladders import LadderStore
from b2bua.sip.dialog import CallIds
from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import NameAddr
from b2bua.sip.message import Request, Response
from b2bua.sip.parser import MAX_MESSAGE_SIZE, parse_message
from b2bua.sip.peer import Peer
from b2bua.sip.transaction import (
    TIMER_64T1,
    ClientTransaction,
    ResponseHandler,
    ServerTransaction,
    TimeoutHandler,
    Timers,
    TransactionLayer,
)

log = logging.getLogger("b2bua.sip")
trace = logging.getLogger("b2bua.sip.trace")


# A host name and port to the address to send to, or None (asked only for names).
NameResolver = Callable[[str, int], Awaitable["tuple[str, int] | None"]]


class Application(Protocol):
    def on_request(self, request: Request, source: Peer) -> None: ...

    def on_ack(self, request: Request, source: Peer) -> None: ...

    def on_stray_response(self, response: Response, source: Peer) -> None: ...

    def on_malformed(self, data: bytes, source: Peer, error: SipParseError) -> None: ...


@dataclass
class StackStats:
    parse_errors: int = 0
    requests: int = 0
    responses: int = 0
    retransmissions: int = 0
    stray_responses: int = 0
    # A message whose handling failed on a bug (an AttemptProtocolError, say): logged
    # with its traceback and counted; the engine goes on with the next message.
    handler_errors: int = 0


class SipStack:
    def __init__(self, host: str, port: int, advertised_host: str,
                 max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.host = host
        self.port = port
        self.advertised_host = advertised_host
        # Where new Call-IDs come from: the engine's wiring gives a signalling worker
        # the CallIds that the dispatcher routes back to it.
        self.call_ids = CallIds()
        self.max_size = max_size
        self.transport_stats = TransportStats()
        self.stats = StackStats()
        self.app: Application | None = None
        self.udp = UdpTransport(self.on_bytes, self.transport_stats, max_size)
        self.tcp: TcpTransport | TcpThroughWorker0 = TcpTransport(
            self._on_tcp_bytes, self.transport_stats, max_size)
        self._tcp_for: TcpForWorkers | None = None
        self.layer: TransactionLayer | None = None
        self._channel: ChannelReceiver | None = None
        self.trace_enabled = False
        # Set by the engine: where calls' messages are kept for their ladders
        # (b2bua/ladders.py); None keeps nothing.
        self.ladders: LadderStore | None = None
        # Set by the engine: the address of a host name (A/AAAA), for a next hop given by
        # name in a Contact or Record-Route (RFC 3263); None when it has none.
        self.resolve_name: NameResolver | None = None
        self.udp.on_name = self._send_to_name
        self._resolving: set[asyncio.Task[None]] = set()

    @property
    def sent_by(self) -> str:
        return f"{self.advertised_host}:{self.port}"

    def contact(self, transport: str, user: str = "softswitch") -> str:
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return f"<sip:{user}@{self.sent_by}{suffix}>"

    def attach(self, app: Application, timers: Timers) -> None:
        """Give the stack its application and its transactions' clock (``start`` does,
        with the event loop's; a unit test does with a fake one and feeds ``on_bytes``)."""
        self.app = app
        self.layer = TransactionLayer(timers)

    async def start(self, app: Application, dispatched: DispatchedSip | None = None) -> None:
        """Bind and read the SIP socket; or, as one of several signalling workers
        (``dispatched``), read what the dispatcher passes and send on the shared socket."""
        loop = asyncio.get_running_loop()
        self.attach(app, SweptTimers(loop))
        if dispatched is None:
            await loop.create_datagram_endpoint(lambda: self.udp,
                                                local_addr=(self.host, self.port))
        else:
            self.udp.connection_made(SipSocketTransport(dispatched.sip_socket, self.udp))
            self._channel = ChannelReceiver(dispatched.channel, self.udp, self.on_bytes)
            self._channel.start(loop)
            if dispatched.tcp_for is None:  # worker 0 holds the TCP connections
                self.tcp = TcpThroughWorker0(dispatched.channel, self.transport_stats)
            elif isinstance(self.tcp, TcpTransport):
                self._tcp_for = TcpForWorkers(dispatched.tcp_for, self.tcp)
                self._tcp_for.start(loop)
        assert self.udp.transport is not None
        enlarge_buffers(self.udp.transport.get_extra_info("socket"))
        if self.port == 0:
            self.port = int(self.udp.transport.get_extra_info("sockname")[1])
        if isinstance(self.tcp, TcpTransport):
            await self.tcp.listen(self.host, self.port)

    async def close(self) -> None:
        if self._channel is not None:
            self._channel.stop(asyncio.get_running_loop())
        if self._tcp_for is not None:
            self._tcp_for.stop(asyncio.get_running_loop())
        if self.udp.transport is not None:
            self.udp.transport.close()
        await self.tcp.close()

    # -- incoming --------------------------------------------------------------------------

    def _on_tcp_bytes(self, data: bytes, source: Peer) -> None:
        if self._tcp_for is not None and self._tcp_for.pass_on(data, source):
            return  # another signalling worker's call
        self.on_bytes(data, source)

    def on_bytes(self, data: bytes, source: Peer) -> None:
        try:
            message = parse_message(data, self.max_size)
        except SipParseError as exc:
            self.stats.parse_errors += 1
            log.debug("unparsable message from %s: %s", source, exc)
            if self.app is not None:
                self.app.on_malformed(data, source, exc)
            return
        if self.trace_enabled:
            trace.info("recv %s call-id=%s\n%s", source, message.get("Call-ID"),
                       data.decode(errors="replace"))
        ladders = self.ladders
        if ladders is not None:
            call_id = message.first_raw("Call-ID")
            if call_id is not None:
                ladders.capture(call_id, False, data, source, time.time())
        try:
            if isinstance(message, Response):
                self._on_response(message, source)
            else:
                self._on_request(message, source)
        except SipParseError as exc:
            # A header the parser kept raw (Via, CSeq, From...) turned out malformed.
            self.stats.parse_errors += 1
            log.debug("malformed header from %s: %s", source, exc)
            if self.app is not None and isinstance(message, Request):
                self.app.on_malformed(data, source, exc)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("handling a message from %s failed (call-id %s)", source,
                          message.get("Call-ID"))

    def _on_response(self, response: Response, source: Peer) -> None:
        assert self.layer is not None and self.app is not None
        self.stats.responses += 1
        txn = self.layer.match_response(response)
        if txn is not None:
            txn.receive(response)
            return
        self.stats.stray_responses += 1
        self.app.on_stray_response(response, source)

    def _on_request(self, request: Request, source: Peer) -> None:
        assert self.layer is not None and self.app is not None
        self.stats.requests += 1
        self.mark_via(request, source)
        txn = self.layer.match_request(request)
        if txn is not None:
            self.stats.retransmissions += 1
            txn.on_retransmission(request)
            return
        if request.first_raw("Route") is not None:
            self._pop_own_route(request)
        if request.method == "ACK":
            self.app.on_ack(request, source)
            return
        self.app.on_request(request, source)

    def _pop_own_route(self, request: Request) -> None:
        """A top Route naming us is ours to consume (RFC 3261 16.4): a phone with the
        softswitch as its outbound proxy, or a proxy that routed the request to us."""
        value = request.get("Route")
        try:
            uri = NameAddr.parse(value or "").uri
        except SipParseError:
            return
        if (uri.port or 5060) == self.port and uri.host.strip("[]") in (
                self.advertised_host, self.host):
            request.remove_first("Route")

    def mark_via(self, request: Request, source: Peer) -> None:
        """RFC 3261 18.2.1 ``received`` and RFC 3581 ``rport`` on the top Via."""
        via = request.top_via
        changed = False
        if via.host != source.host:
            via.params["received"] = source.host
            changed = True
        if "rport" in via.params and not via.params["rport"]:
            via.params["rport"] = str(source.port)
            via.params.setdefault("received", source.host)
            changed = True
        if changed:
            request.remove_first("Via")
            request.prepend("Via", str(via))

    # -- outgoing --------------------------------------------------------------------------

    def send(self, data: bytes, peer: Peer, call_id: str | None = None) -> None:
        """``call_id``: the message's, when the sender has it at hand (else the ladders
        read it from the bytes)."""
        if self.trace_enabled:
            trace.info("send %s\n%s", peer, data.decode(errors="replace"))
        ladders = self.ladders
        if ladders is not None:
            ladders.capture(call_id, True, data, peer, time.time())
        if peer.transport == "tcp":
            self.tcp.send(data, peer.host, peer.port)
        else:
            self.udp.send(data, peer.host, peer.port)

    def _send_to_name(self, data: bytes, host: str, port: int) -> None:
        if self.resolve_name is None:
            self.transport_stats.send_errors += 1
            log.warning("not sent to %s:%s: not an IP address", host, port)
            return
        task = asyncio.ensure_future(self._resolve_and_send(self.resolve_name, data, host,
                                                            port))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve_and_send(self, resolve: NameResolver, data: bytes, host: str,
                                port: int) -> None:
        address = await resolve(host, port)
        if address is None:
            self.transport_stats.send_errors += 1
            log.warning("not sent to %s:%s: no address for the name", host, port)
            return
        self.udp.send(data, *address)

    def new_call_id(self) -> str:
        """A Call-ID for a dialog we start (an outbound leg, a registration)."""
        return self.call_ids.new(self.advertised_host)

    def response_peer(self, request: Request, source: Peer) -> Peer:
        """Where responses to ``request`` go (RFC 3261 18.2.2, RFC 3581)."""
        if source.transport == "tcp":
            return source
        via = request.top_via
        if via.params.get("rport"):
            return source
        return Peer("udp", via.params.get("received") or source.host, via.port or 5060)

    def server_transaction(self, request: Request, source: Peer) -> ServerTransaction:
        assert self.layer is not None
        peer = self.response_peer(request, source)
        # What ``send`` files the messages under in the ladders: nothing to read when off.
        call_id = request.first_raw("Call-ID") if self.ladders is not None else None
        return self.layer.new_server(request, lambda data: self.send(data, peer, call_id),
                                     peer.reliable)

    def respond_stateless(self, request: Request, source: Peer, response: Response) -> None:
        """A response without a transaction (refusals: nothing to keep)."""
        self.send(response.to_bytes(), self.response_peer(request, source),
                  request.first_raw("Call-ID") if self.ladders is not None else None)

    def client_transaction(
        self,
        request: Request,
        peer: Peer,
        on_response: ResponseHandler,
        on_timeout: TimeoutHandler,
        timeout: float = TIMER_64T1,
        resend: Sequence[float] | None = None,
    ) -> ClientTransaction:
        assert self.layer is not None
        call_id = request.first_raw("Call-ID") if self.ladders is not None else None
        return self.layer.new_client(
            request, lambda data: self.send(data, peer, call_id), peer.reliable,
            on_response, on_timeout, timeout, resend,
        )

    def trust(self, peer: Peer) -> None:
        """Mark a TCP connection as having carried an authorised request."""
        if peer.reliable:
            self.tcp.trust(peer.host, peer.port)

    def close_untrusted(self, peer: Peer) -> None:
        if peer.reliable:
            self.tcp.close_untrusted(peer.host, peer.port)

    def via(self, transport: str, branch: str) -> str:
        return f"SIP/2.0/{transport.upper()} {self.sent_by};branch={branch};rport"
