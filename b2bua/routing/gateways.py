"""The engine's view of mapping and routing gateways, reloaded live from SQLite."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from b2bua.numbers.rules import NO_RULES, NumberRules


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


def _media(row: sqlite3.Row) -> dict[str, Any]:
    return {"media_relay": str(row["media_relay"]), "rtp_encryption": bool(row["rtp_encryption"]),
            "media_check": str(row["media_check"])}


def _optional_bool(value: object) -> bool | None:
    return None if value is None else bool(value)


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

    def load_mapping(self, conn: sqlite3.Connection) -> None:
        gateways = {
            int(r["id"]): MappingGateway(
                id=int(r["id"]),
                name=str(r["name"]),
                auth_mode=str(r["auth_mode"]),
                ips=frozenset(json.loads(r["ips"] or "[]")),
                port=r["port"],
                username=r["username"],
                password=r["password"],
                capacity=r["capacity"],
                enabled=bool(r["enabled"]),
                numbers=NumberRules.from_row(r),
                **_media(r),
            )
            for r in conn.execute("SELECT * FROM mapping_gateways ORDER BY id")
        }
        by_ip: dict[str, list[MappingGateway]] = {}
        by_user: dict[str, MappingGateway] = {}
        for gw in gateways.values():
            if gw.auth_mode == "password":
                if gw.username:
                    by_user.setdefault(gw.username, gw)
                continue
            for ip in gw.ips:
                by_ip.setdefault(ip, []).append(gw)
        self.mapping, self.mapping_by_ip, self.mapping_by_user = gateways, by_ip, by_user

    def load_routing(self, conn: sqlite3.Connection) -> None:
        gateways = {
            int(r["id"]): RoutingGateway(
                id=int(r["id"]),
                name=str(r["name"]),
                host=str(r["host"]),
                port=None if r["port"] is None else int(r["port"]),
                transport=str(r["transport"]),
                prefixes=tuple(json.loads(r["prefixes"] or "[]")),
                priority=int(r["priority"]),
                prefix_mode=str(r["prefix_mode"]),
                capacity=r["capacity"],
                enabled=bool(r["enabled"]),
                invite_timeout=int(r["invite_timeout"]),
                trying_timeout=int(r["trying_timeout"]),
                session_progress_timeout=int(r["session_progress_timeout"]),
                session_progress_sdp_timeout=int(r["session_progress_sdp_timeout"]),
                ringing_timeout=int(r["ringing_timeout"]),
                stop_switch_after_invite_timeout=_optional_bool(
                    r["stop_switch_after_invite_timeout"]),
                stop_switch_after_sdp=_optional_bool(r["stop_switch_after_sdp"]),
                stop_switch_after_rtp_start=_optional_bool(r["stop_switch_after_rtp_start"]),
                stop_switch_after_busy=_optional_bool(r["stop_switch_after_busy"]),
                switch_after_ringing=bool(r["switch_after_ringing"]),
                stop_switch_codes=tuple(json.loads(r["stop_switch_codes"] or "[]")),
                numbers=NumberRules.from_row(r),
                **_media(r),
            )
            for r in conn.execute("SELECT * FROM routing_gateways ORDER BY id")
        }
        self.routing = gateways
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
