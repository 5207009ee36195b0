"""A proxy in front of the softswitch (the cluster's kamailio edge): whose address a
request is really from, and how a node asks the edge for silence.

Behind an edge every request arrives from the edge's address. The edge strips any
``X-Softswitch-Source`` a caller sent and adds its own, ``transport:ip:port`` of the
address it received the request from; a node believes that header only when the
request's transport peer is one of ``SS_EDGE_ADDRESSES``. The policy (gateways by
address, suspensions, silent drop) and the CDR then see the customer's address, while
replies and in-dialog requests still go through the edge (Via, route sets, Path).

A node that would drop a request in silence cannot be silent toward the edge: the edge's
transaction would time out and try the next node, then answer 408 itself. It answers the
edge with a final response carrying ``X-Softswitch-Drop``, which the edge swallows
(``deploy/kamailio/edge.cfg``, its ``onsend_route``), so the caller hears nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from b2bua.sip.headers import canonical_name
from b2bua.sip.message import Request
from b2bua.sip.peer import Peer

SOURCE_HEADER = canonical_name("X-Softswitch-Source")
DROP_HEADER = "X-Softswitch-Drop"
DEFAULT_PORT = 5060


def parse_addresses(text: str) -> frozenset[str]:
    """``SS_EDGE_ADDRESSES``: comma-separated IP addresses, in their canonical form.
    Raises ValueError naming the entry that is not one."""
    out: set[str] = set()
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            out.add(str(ipaddress.ip_address(entry)))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address") from None
    return frozenset(out)


def parse_proxy(text: str) -> Peer | None:
    """``SS_OUTBOUND_PROXY``: ``ip``, ``ip:port`` or ``[ipv6]:port`` (UDP); empty: None.
    Raises ValueError when it is none of these."""
    text = text.strip()
    if not text:
        return None
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        inner, _, rest = text[1:].partition("]")
        host = inner
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r} is not ip:port")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, raw = text.partition(":")
        port = _port(raw, text)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{text!r} does not start with an IP address") from None
    return Peer("udp", host, port)


@functools.lru_cache(maxsize=8)
def outbound_proxy(text: str) -> Peer | None:
    """The proxy of a valid ``SS_OUTBOUND_PROXY`` value (parsed once per value)."""
    try:
        return parse_proxy(text)
    except ValueError:
        return None  # the registry refuses such a value


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{text!r} has no valid port")
    return int(raw)


def parse_source(value: str) -> Peer | None:
    """The edge's ``transport:ip:port`` (an IPv6 address unbracketed or bracketed);
    None when it is not that."""
    transport, _, rest = value.strip().partition(":")
    host, _, raw_port = rest.rpartition(":")
    transport = transport.lower()
    if transport not in ("udp", "tcp", "tls") or not raw_port.isdigit():
        return None
    port = int(raw_port)
    try:
        host = str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    # TLS ends at the edge; to the node it is a reliable transport like TCP.
    return Peer("tcp" if transport == "tls" else transport, host, port)


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where a request came from: ``peer`` sent it to us (replies go back there);
    ``customer`` is whose it is (the policy's and the CDR's address); ``via_edge`` when
    a trusted edge relayed it and vouched for ``customer``."""

    peer: Peer
    customer: Peer
    via_edge: bool = False


class EdgeTrust:
    """The trusted edges from ``SS_EDGE_ADDRESSES``, parsed once per value."""

    def __init__(self) -> None:
        self._text = ""
        self._edges: frozenset[str] = frozenset()
        self.bad_headers = 0  # a trusted edge's header that could not be read

    def update(self, text: str) -> None:
        if text != self._text:
            try:
                self._edges = parse_addresses(text)
            except ValueError:
                self._edges = frozenset()  # the registry refuses such a value
            self._text = text

    def is_edge(self, peer: Peer) -> bool:
        return peer.host in self._edges

    def arrival(self, request: Request, peer: Peer) -> Arrival:
        if not self._edges or peer.host not in self._edges:
            return Arrival(peer, peer)
        value = request.first_raw(SOURCE_HEADER)
        if value is None:
            return Arrival(peer, peer)  # the edge's own request (or a node's through it)
        customer = parse_source(value)
        if customer is None:
            self.bad_headers += 1
            return Arrival(peer, peer)
        return Arrival(peer, customer, via_edge=True)
