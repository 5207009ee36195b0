"""REGISTER handling for phones and password-mode mapping gateways (RFC 3261 section
10.3) and NAT detection. A gateway registers under its username exactly as a phone does;
its bindings carry the gateway's id.

Rules (docs/registration.md):
- expiry asked (Contact ``expires`` parameter, else the Expires header, else the
  maximum) below the minimum of ``SS_ENDPOINT_EXPIRE`` gets ``423`` with
  ``Min-Expires``; above the maximum it is lowered to it;
- a phone behind NAT (the REGISTER's source address is not its Contact's address) gets
  at most ``SS_ENDPOINT_NAT_EXPIRE``, and its binding remembers the source address and
  transport: requests to it go there, through the NAT mapping;
- ``SS_ENDPOINT_REGISTER_REPLACE`` On: a REGISTER from another contact replaces the
  account's live binding; Off: it is refused with ``403`` while the old one is alive;
- ``Contact: *`` with ``Expires: 0`` removes every binding of the account;
- a REGISTER that came through proxies carrying ``Path`` (RFC 3327) stores the Path with
  the binding; requests to the phone take it as their route (its NAT is the first
  proxy's to handle; the Path is returned when the phone says ``Supported: path``).
"""

from __future__ import annotations

import email.utils
import logging
from dataclasses import dataclass

from b2bua.config.live import Params
from b2bua.registrar.bindings import Binding, BindingStore
from b2bua.sip.dialog import origin_host
from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import NameAddr
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.peer import Peer
from b2bua.sip.uri import SipUri

log = logging.getLogger("b2bua.registrar")


def behind_nat(contact: SipUri, source: Peer) -> bool:
    """The phone is behind NAT when it registers from another address than it names."""
    if contact.host.strip("[]") != source.host:
        return True
    return source.transport == "udp" and (contact.port or 5060) != source.port


def behind_nat_through(contact: SipUri, request: Request, source: Peer) -> bool:
    """Through proxies (a Path), the phone's own address is its bottom Via's."""
    return contact.host.strip("[]") != origin_host(request, source)


@dataclass(slots=True)
class _Change:
    contact: str
    expires: int  # 0 removes


class Registrar:
    def __init__(self, params: Params, bindings: BindingStore) -> None:
        self.params = params
        self.bindings = bindings
        self.registered = 0
        self.unregistered = 0
        self.refused = 0

    def register(self, request: Request, source: Peer, username: str, now: float,
                 mapping_gateway_id: int | None = None,
                 customer: Peer | None = None) -> Response:
        """``username``: the authenticated phone account, or the mapping gateway's
        username with its ``mapping_gateway_id``; ``customer``: the address a trusted
        edge received the REGISTER from (docs/cluster.md)."""
        try:
            return self._register(request, source, username, now, mapping_gateway_id,
                                  customer)
        except (SipParseError, ValueError):
            return make_response(request, 400, "Bad Contact or Expires")

    def _register(self, request: Request, source: Peer, user: str, now: float,
                  mapping_gateway_id: int | None, customer: Peer | None = None) -> Response:
        contacts = request.get_all("Contact")
        header_expires = _expires(request.get("Expires"))
        if contacts and any(c.strip() == "*" for c in contacts):
            if len(contacts) != 1 or header_expires != 0:
                return make_response(request, 400, "Wildcard Contact needs Expires: 0")
            for binding in self.bindings.of(user, now):
                self.bindings.remove(user, binding.contact)
                self.unregistered += 1
            return self._ok(request, user, now)
        low, high = self.params["SS_ENDPOINT_EXPIRE"]
        changes: list[_Change] = []
        for value in contacts:
            addr = NameAddr.parse(value)
            asked = _expires(addr.params.get("expires"))
            if asked is None:
                asked = header_expires if header_expires is not None else high
            if 0 < asked < low:
                response = make_response(request, 423)
                response.add("Min-Expires", str(low))
                self.refused += 1
                return response
            changes.append(_Change(str(addr.uri), min(asked, high)))
        if not self.params.flag("SS_ENDPOINT_REGISTER_REPLACE"):
            adding = {c.contact for c in changes if c.expires > 0}
            others = [b for b in self.bindings.of(user, now) if b.contact not in adding]
            if adding and others:
                self.refused += 1
                return make_response(request, 403, "Already Registered Elsewhere")
        for change in changes:
            if change.expires == 0:
                if self.bindings.remove(user, change.contact) is not None:
                    self.unregistered += 1
                continue
            self._bind(request, source, user, change, now, mapping_gateway_id, customer)
        return self._ok(request, user, now)

    def _bind(self, request: Request, source: Peer, user: str, change: _Change,
              now: float, mapping_gateway_id: int | None, customer: Peer | None) -> None:
        path = tuple(request.get_all("Path"))
        contact = SipUri.parse(change.contact)
        nat = behind_nat_through(contact, request, source) if path else \
            behind_nat(contact, source)
        granted = change.expires
        if nat:
            granted = min(granted, self.params.integer("SS_ENDPOINT_NAT_EXPIRE"))
        if self.params.flag("SS_ENDPOINT_REGISTER_REPLACE"):
            for old in self.bindings.of(user, now):
                if old.contact != change.contact:
                    self.bindings.remove(user, old.contact)
        self.bindings.put(Binding(
            username=user,
            contact=change.contact,
            source=source,
            nat=nat,
            expires_at=now + granted,
            registered_at=now,
            user_agent=(request.get("User-Agent") or "")[:200],
            call_id=request.call_id,
            path=path,
            mapping_gateway_id=mapping_gateway_id,
            customer=customer,
        ))
        self.registered += 1

    def _ok(self, request: Request, user: str, now: float) -> Response:
        response = make_response(request, 200)
        paths = request.get_all("Path")
        if paths and "path" in (s.lower() for s in request.get_all("Supported")):
            # RFC 3327 5.3: stored whatever the UA supports; returned to a UA that
            # says it supports Path (kamailio's "lazy" mode).
            for value in paths:
                response.add("Path", value)
            response.add("Supported", "path")
        for binding in self.bindings.of(user, now):
            remaining = max(1, round(binding.expires_at - now))
            response.add("Contact", f"<{binding.contact}>;expires={remaining}")
        response.add("Date", email.utils.formatdate(now, usegmt=True))
        return response


def _expires(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        raise ValueError("bad expires")
    return min(int(text), 2**31 - 1)
