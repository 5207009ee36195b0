"""SIP dialogs (RFC 3261 section 12): identifiers, route set, CSeq, remote target."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from b2bua.sip._dispatch import call_id_hash
from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import NameAddr
from b2bua.sip.message import Request, Response
from b2bua.sip.peer import Peer
from b2bua.sip.transaction import new_branch
from b2bua.sip.uri import SipUri


def new_tag() -> str:
    return secrets.token_hex(6)


class CallIds:
    """New Call-IDs that the dispatcher routes back to this worker.

    A B-leg's Call-ID is ours, so the vendor's BYE, re-INVITE and responses carry it;
    the dispatcher must send them to the worker that holds the call. A random Call-ID
    lands on worker ``index`` one time in ``count``: draw until it does.
    """

    def __init__(self, index: int = 0, count: int = 1) -> None:
        self.index = index
        self.count = count

    def new(self, host: str) -> str:
        while True:
            call_id = f"{secrets.token_hex(12)}@{host}"
            if self.count == 1 or call_id_hash(call_id.encode()) % self.count == self.index:
                return call_id


@dataclass(slots=True)
class Dialog:
    """One side of a call as seen by the softswitch (we are the local party)."""

    call_id: str
    local_tag: str
    local_uri: str  # name-addr without tag, as in our From (UAC) or the peer's To (UAS)
    remote_uri: str
    remote_target: str  # the peer's Contact URI
    peer: Peer  # where in-dialog requests go when there is no route set
    via_host: str
    contact: str
    remote_tag: str | None = None
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 1
    remote_seq: int | None = None
    confirmed: bool = False
    # Requests go to ``peer`` whatever the Contact says: the peer is behind NAT (its
    # Contact is a private address) or reachable only on its TCP connection.
    pinned: bool = False

    @classmethod
    def as_uas(cls, invite: Request, source: Peer, via_host: str, contact: str,
               send_to_source: bool) -> Dialog:
        """Dialog of the leg a request arrived on; ``send_to_source`` pins requests to
        the address it came from (TCP, or a peer whose Contact is unreachable). The route
        set is the request's Record-Route, in order (RFC 3261 12.1.1)."""
        target = _contact_uri(invite) or str(invite.from_.uri)
        peer = source if send_to_source else _peer_for(target, source.transport, source)
        to = invite.to
        return cls(
            pinned=send_to_source,
            call_id=invite.call_id,
            local_tag=new_tag(),
            local_uri=_without_tag(to),
            remote_uri=_without_tag(invite.from_),
            remote_tag=invite.from_.tag,
            remote_target=target,
            peer=peer,
            via_host=via_host,
            contact=contact,
            route_set=list(invite.get_all("Record-Route")),
            local_seq=secrets.randbelow(10000) + 1,
            remote_seq=invite.cseq.number,
        )

    def update_from_response(self, response: Response) -> None:
        """UAC side: learn the remote tag, target and route set from a 1xx/2xx.

        The route set is taken from the first response of an early dialog and taken
        again from the 2xx that confirms it (RFC 3261 13.2.2.4), never after that.
        """
        tag = response.to.tag
        answered = 200 <= response.status < 300
        if tag and (self.remote_tag != tag or (answered and not self.confirmed)):
            self.remote_tag = tag
            self.route_set = list(reversed(response.get_all("Record-Route")))
        if answered:
            self.confirmed = True
        target = _contact_uri(response)
        if target:
            self.remote_target = target
            if not self.route_set and not self.pinned:
                self.peer = _peer_for(target, self.peer.transport, self.peer)

    def to_note(self) -> dict[str, Any]:
        """What another node needs to end this dialog if we die (docs/cluster.md): a
        flat dict of strings and numbers."""
        return {"call_id": self.call_id, "local_tag": self.local_tag,
                "local_uri": self.local_uri, "remote_uri": self.remote_uri,
                "remote_tag": self.remote_tag, "remote_target": self.remote_target,
                "transport": self.peer.transport, "host": self.peer.host,
                "port": self.peer.port, "route_set": list(self.route_set),
                "local_seq": self.local_seq, "pinned": self.pinned}

    @classmethod
    def from_note(cls, note: dict[str, Any], via_host: str, contact: str) -> Dialog:
        """A dialog noted by :meth:`to_note`, to be continued from ``via_host``."""
        return cls(call_id=str(note["call_id"]), local_tag=str(note["local_tag"]),
                   local_uri=str(note["local_uri"]), remote_uri=str(note["remote_uri"]),
                   remote_tag=None if note["remote_tag"] is None else str(note["remote_tag"]),
                   remote_target=str(note["remote_target"]),
                   peer=Peer(str(note["transport"]), str(note["host"]), int(note["port"])),
                   via_host=via_host, contact=contact,
                   route_set=[str(r) for r in note["route_set"]],
                   local_seq=int(note["local_seq"]), confirmed=True,
                   pinned=bool(note["pinned"]))

    def local_name_addr(self) -> str:
        return f"{self.local_uri};tag={self.local_tag}"

    def remote_name_addr(self) -> str:
        return f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri

    def next_peer(self) -> Peer:
        """Where the next in-dialog request goes: the pinned peer, else the first route,
        else the target."""
        if self.route_set and not self.pinned:
            return first_hop(self.route_set[0], self.peer)
        return self.peer

    def create_request(self, method: str, body: bytes = b"", content_type: str | None = None,
                       cseq: int | None = None, extra: list[tuple[str, str]] | None = None
                       ) -> Request:
        if cseq is None:
            if method not in ("ACK", "CANCEL"):
                self.local_seq += 1
            cseq = self.local_seq
        transport = self.next_peer().transport.upper()
        headers: list[tuple[str, str]] = [
            ("Via", f"SIP/2.0/{transport} {self.via_host};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
        ]
        request_uri, routes = route_request(self.route_set, self.remote_target)
        headers += [("Route", r) for r in routes]
        headers += [
            ("From", self.local_name_addr()),
            ("To", self.remote_name_addr()),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        if method in ("INVITE", "UPDATE"):
            headers.append(("Contact", self.contact))
        if extra:
            headers += extra
        if body and content_type:
            headers.append(("Content-Type", content_type))
        return Request(method, request_uri, headers, body)


def first_hop(route: str, fallback: Peer) -> Peer:
    """Where a request whose first Route is ``route`` goes."""
    try:
        return _peer_from_uri(NameAddr.parse(route).uri, fallback.transport)
    except SipParseError:
        return fallback


def origin_host(request: Request, source: Peer) -> str:
    """The address the request's sender sent from: the source, or behind proxies the
    bottom Via's (its own, with the ``received`` its first proxy added)."""
    via_lines = [v for name, v in request.headers if name == "Via"]
    if len(via_lines) == 1 and "," not in via_lines[0]:
        return source.host  # one Via: no proxy, nothing to parse
    try:
        vias = request.vias
    except SipParseError:
        return source.host
    if len(vias) < 2:
        return source.host
    origin = vias[-1]
    return origin.params.get("received") or origin.host.strip("[]")


def is_loose(route: str) -> bool:
    """A loose router (``lr``); one whose URI cannot be read is taken as loose, the
    common case, rather than moving the target into the Route header."""
    try:
        return "lr" in NameAddr.parse(route).uri.params
    except SipParseError:
        return True


def route_request(route_set: list[str], remote_target: str) -> tuple[str, list[str]]:
    """Request-URI and Route values of a request sent over ``route_set`` (RFC 3261
    12.2.1.1): with a loose first hop the target stays the Request-URI; a strict router
    gets its own URI as the Request-URI and the target as the last Route."""
    if not route_set or is_loose(route_set[0]):
        return remote_target, route_set
    uri = NameAddr.parse(route_set[0]).uri
    uri.headers = None  # header parameters are not allowed in a Request-URI (19.1.1)
    return str(uri), [*route_set[1:], f"<{remote_target}>"]


def copy_record_route(request: Request, response: Response) -> None:
    """RFC 3261 12.1.1: a response that creates a dialog carries the request's
    Record-Route values, in order, so every proxy on the path stays on it."""
    for value in request.get_all("Record-Route"):
        response.add("Record-Route", value)


def _without_tag(addr: NameAddr) -> str:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    clean = NameAddr(addr.display, addr.uri, params)
    return str(clean)


def _contact_uri(message: Request | Response) -> str | None:
    uri = message.contact_uri
    return None if uri is None else str(uri)


def _peer_from_uri(uri: SipUri, default_transport: str) -> Peer:
    transport = (uri.transport or default_transport).lower()
    if transport not in ("udp", "tcp"):
        transport = default_transport
    return Peer(transport, uri.host.strip("[]"), uri.port or 5060)


def _peer_for(target: str, transport: str, fallback: Peer) -> Peer:
    try:
        return _peer_from_uri(SipUri.parse(target), transport)
    except SipParseError:
        return fallback
