"""The engine's view of mapping and routing gateways, reloaded live from the database
(b2bua/storage/gateways.py reads them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from b2bua.controls.duration import DurationLimit
from b2bua.controls.failure_codes import NO_MAP, FailureCodes
from b2bua.controls.rates import CallRate
from b2bua.numbers.rules import NO_RULES, NumberRules

if TYPE_CHECKING:
    from b2bua.routing.periods import Period


@dataclass(frozen=True, slots=True)
class MappingGateway:
    """A customer trunk calls come in from."""

    id: int
    name: str
    auth_mode: str  # ip | ip_port | password
    ips: frozenset[str]
    port: int | None
    username: str | None
    password: str | None
    capacity: int | None
    enabled: bool
    numbers: NumberRules = field(default_factory=lambda: NO_RULES)
    media_relay: str = "auto"  # auto | on | off | must_on
    rtp_encryption: bool = False
    media_check: str = "none"
    call_rate: CallRate | None = None
    call_rate_code: int = 503  # what a call over the rate is answered
    max_duration: DurationLimit | None = None  # None: SS_MAX_CALL_DURATION
    failure_codes: FailureCodes = NO_MAP


@dataclass(frozen=True, slots=True)
class RoutingGateway:
    """A vendor trunk calls go out to."""

    id: int
    name: str
    host: str  # an IP address or a DNS name (b2bua/routing/dns.py)
    port: int | None  # None: found by DNS (NAPTR, SRV), else 5060
    transport: str  # udp | tcp
    prefixes: tuple[str, ...]
    priority: int
    prefix_mode: str  # terminate | continue
    capacity: int | None
    enabled: bool
    invite_timeout: int = 0  # 0: the system parameter
    trying_timeout: int = 0
    session_progress_timeout: int = 0
    session_progress_sdp_timeout: int = 0
    ringing_timeout: int = 0
    stop_switch_after_invite_timeout: bool | None = None  # None: the system parameter
    stop_switch_after_sdp: bool | None = None
    stop_switch_after_rtp_start: bool | None = None
    stop_switch_after_busy: bool | None = None
    switch_after_ringing: bool = True
    stop_switch_codes: tuple[int, ...] = ()
    numbers: NumberRules = field(default_factory=lambda: NO_RULES)
    media_relay: str = "auto"
    rtp_encryption: bool = False
    media_check: str = "none"
    call_rate: CallRate | None = None
    weight: int | None = None  # None: not weighted (rule 2's order)
    periods: tuple[Period, ...] = ()


@dataclass
class GatewayDirectory:
    """Indexes built once per reload so per-request lookups are dictionary hits."""

    mapping: dict[int, MappingGateway] = field(default_factory=dict)
    routing: dict[int, RoutingGateway] = field(default_factory=dict)
    mapping_by_ip: dict[str, list[MappingGateway]] = field(default_factory=dict)
    mapping_by_user: dict[str, MappingGateway] = field(default_factory=dict)
    routing_by_ip: dict[str, list[RoutingGateway]] = field(default_factory=dict)
    # The addresses a DNS-named routing gateway resolved to, by id, with the name they
    # are for: requests from them count as that vendor's.
    resolved: dict[int, tuple[str, frozenset[str]]] = field(default_factory=dict)

    def set_mapping(self, gateways: Iterable[MappingGateway]) -> None:
        """Replace the mapping gateways (given in id order: the lowest id wins a tie)."""
        by_id = {gw.id: gw for gw in gateways}
        by_ip: dict[str, list[MappingGateway]] = {}
        by_user: dict[str, MappingGateway] = {}
        for gw in by_id.values():
            if gw.auth_mode == "password":
                if gw.username:
                    by_user.setdefault(gw.username, gw)
                continue
            for ip in gw.ips:
                by_ip.setdefault(ip, []).append(gw)
        self.mapping, self.mapping_by_ip, self.mapping_by_user = by_id, by_ip, by_user

    def set_routing(self, gateways: Iterable[RoutingGateway]) -> None:
        """Replace the routing gateways (given in id order)."""
        self.routing = {gw.id: gw for gw in gateways}
        self._index_routing()

    def set_resolved(self, gw_id: int, host: str, addresses: frozenset[str]) -> None:
        """A DNS-named gateway's current addresses (empty: forget them)."""
        if addresses:
            self.resolved[gw_id] = (host, addresses)
        else:
            self.resolved.pop(gw_id, None)
        self._index_routing()

    def addresses(self, gw_id: int) -> frozenset[str]:
        """Where requests from routing gateway ``gw_id`` come from, as far as known."""
        gw = self.routing.get(gw_id)
        if gw is None:
            return frozenset()
        resolved = self.resolved.get(gw_id)
        extra = resolved[1] if resolved is not None and resolved[0] == gw.host else frozenset()
        return frozenset({gw.host}) | extra

    def _index_routing(self) -> None:
        by_ip: dict[str, list[RoutingGateway]] = {}
        for gw in self.routing.values():
            for address in self.addresses(gw.id):
                by_ip.setdefault(address, []).append(gw)
        self.routing_by_ip = by_ip
