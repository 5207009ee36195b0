"""Who a call comes from (a customer trunk or a phone) and where a leg goes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from b2bua.controls.duration import DurationLimit
from b2bua.controls.failure_codes import NO_MAP, FailureCodes
from b2bua.controls.rates import CallRate
from b2bua.numbers.rules import NO_RULES, NumberRules
from b2bua.registrar.bindings import Binding
from b2bua.registrar.phones import PhoneAccount
from b2bua.routing.dns import DEFAULT_PORT, Target
from b2bua.routing.gateways import MappingGateway, RoutingGateway
from b2bua.sip.dialog import first_hop
from b2bua.sip.peer import Peer
from b2bua.sip.uri import user_at


@dataclass(frozen=True, slots=True)
class Origin:
    """The customer side of a call: a mapping gateway or a phone account."""

    kind: str  # "gateway", "phone", or "vendor" (a call to our registered contact)
    id: int
    name: str
    capacity: int | None
    numbers: NumberRules = NO_RULES
    media_relay: str = "auto"
    rtp_encryption: bool = False
    call_rate: CallRate | None = None
    call_rate_code: int = 503
    max_duration: DurationLimit | None = None  # None: SS_MAX_CALL_DURATION
    failure_codes: FailureCodes = NO_MAP

    @classmethod
    def gateway(cls, gw: MappingGateway) -> Origin:
        return cls("gateway", gw.id, gw.name, gw.capacity, gw.numbers, gw.media_relay,
                   gw.rtp_encryption, gw.call_rate, gw.call_rate_code, gw.max_duration,
                   gw.failure_codes)

    @classmethod
    def vendor(cls, gw: RoutingGateway) -> Origin:
        return cls("vendor", gw.id, gw.name, gw.capacity, gw.numbers, gw.media_relay,
                   gw.rtp_encryption)

    @classmethod
    def phone(cls, phone: PhoneAccount) -> Origin:
        return cls("phone", phone.id, phone.username, phone.capacity, phone.numbers,
                   call_rate=phone.call_rate, max_duration=phone.max_duration)

    @property
    def key(self) -> tuple[str, int]:
        return (self.kind, self.id)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where the outbound leg goes: a vendor, or a registered phone's binding."""

    peer: Peer
    request_uri: str
    to_uri: str
    gateway: RoutingGateway | None = None
    binding: Binding | None = None
    caller: str | None = None  # the caller number sent (None: the platform number)
    pai: str | None = None  # the P-Asserted-Identity number, if the gateway sends one
    route: tuple[str, ...] = ()  # a preloaded route (a phone's Path), ``peer`` its first hop
    vendor_peer: Peer | None = None  # behind an outbound proxy: the vendor's own address

    @property
    def media_relay(self) -> str:
        return self.gateway.media_relay if self.gateway is not None else "auto"

    @property
    def encrypted(self) -> bool:
        return self.gateway is not None and self.gateway.rtp_encryption

    @property
    def nat(self) -> bool:
        return self.binding is not None and self.binding.nat

    @property
    def pinned(self) -> bool:
        """A phone behind NAT or on TCP is reached only at its binding's source; one
        behind proxies (a Path) through them, whose first hop handles its NAT."""
        if self.binding is None:
            return False
        return self.peer.reliable or (self.binding.nat and not self.route)

    @property
    def target(self) -> str:
        """The address the INVITE goes to, as the CDR attempt shows it: the vendor's,
        also when it leaves through an outbound proxy."""
        peer = self.vendor_peer or self.peer
        host = f"[{peer.host}]" if ":" in peer.host else peer.host
        return f"{host}:{peer.port}"

    def through(self, proxy: Peer | None) -> Destination:
        """The same leg sent to an outbound proxy with a loose Route to it (RFC 3261
        8.1.2), the Request-URI still the vendor's; unchanged when ``proxy`` is None."""
        if proxy is None:
            return self
        host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
        return replace(self, peer=proxy, route=(f"<sip:{host}:{proxy.port};lr>", *self.route),
                       vendor_peer=self.peer)

    @classmethod
    def vendor(cls, gw: RoutingGateway, caller: str, callee: str,
               pai: str | None = None, target: Target | None = None) -> Destination:
        """``target``: where the gateway's name resolved to (None: its IP host)."""
        # The URIs name the gateway as configured (RFC 3263: the domain, with a port
        # only when one was configured); the datagrams go to the resolved target.
        host = gw.host if gw.port is None else f"{gw.host}:{gw.port}"
        suffix = ";transport=tcp" if gw.transport == "tcp" else ""
        peer = Peer(gw.transport, gw.host, gw.port or DEFAULT_PORT) if target is None else \
            Peer(gw.transport, target.address, target.port)
        return cls(peer, f"sip:{user_at(callee, host)}{suffix}",
                   f"<sip:{user_at(callee, host)}>", gateway=gw, caller=caller, pai=pai)

    @classmethod
    def phone(cls, binding: Binding, callee: str, our_host: str) -> Destination:
        # The binding's source address is where the phone can be reached: through its
        # NAT mapping (or TCP connection) when behind NAT, its own address otherwise;
        # through the proxies of its Path, the first of them (over its TCP connection
        # when the REGISTER came on one).
        to_uri = f"<sip:{callee}@{our_host}>"
        if binding.path and not binding.source.reliable:
            first = first_hop(binding.path[0], binding.source)
            return cls(first, binding.contact, to_uri, binding=binding, route=binding.path)
        return cls(binding.source, binding.contact, to_uri, binding=binding,
                   route=binding.path)
