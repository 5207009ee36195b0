"""All registrations to vendors: follows the configuration live, unregisters on stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from b2bua.config.live import Params
from b2bua.options import HostPort
from b2bua.routing.dns import is_ip
from b2bua.sip.peer import Peer
from b2bua.sip.stack import SipStack
from b2bua.sip.transaction import Timers
from b2bua.upstream.registration import Locate, RegistrationConfig, UpstreamRegistration

log = logging.getLogger("b2bua.upstream")

# Graceful stop waits at most this long for every unregister together.
UNREGISTER_TIMEOUT = 3.0

Spawn = Callable[[Coroutine[Any, Any, None]], object]


@dataclass(frozen=True, slots=True)
class VendorRegistration:
    """A registration to a vendor as configured (b2bua/storage/upstream.py reads the
    enabled ones of enabled routing gateways), with its gateway's address."""

    gateway_id: int
    gateway_name: str
    gateway_host: str
    gateway_port: int | None  # None: found by DNS
    gateway_transport: str
    registrar: str | None  # host[:port]; None or "": the gateway's address
    username: str
    auth_username: str | None  # None or "": the username
    password: str | None
    host_name: str | None  # for our Contact; None or "": the advertised address
    expire: int | None


def _registrar(value: str | None, default: Peer, default_srv: bool
               ) -> tuple[Peer, str, bool]:
    """The registrar's address, its host[:port] as configured, and whether DNS SRV
    decides its port (a name given without one, RFC 3263)."""
    if not value:
        host_port = f"{default.host}:{default.port}" if default.port != 5060 or \
            (not default_srv and not is_ip(default.host)) else default.host
        return default, host_port, default_srv
    try:
        parsed = HostPort.parse(value if ":" in value else f"{value}:5060")
    except ValueError:
        return default, value, default_srv
    return Peer(default.transport, parsed.host, parsed.port), value, \
        ":" not in value and not is_ip(parsed.host)


class UpstreamManager:
    def __init__(self, stack: SipStack, params: Params, timers: Timers, spawn: Spawn) -> None:
        self.stack = stack
        self.params = params
        self.timers = timers
        self.spawn = spawn
        self.registrations: dict[int, UpstreamRegistration] = {}
        self.started = False
        self.registered_elsewhere: Callable[[int], bool] | None = None
        # Set by the engine: every address a routing gateway is known at (its IP, or what
        # its DNS name resolved to).
        self.vendor_addresses: Callable[[int], frozenset[str]] = lambda _id: frozenset()
        # Set by the engine: RFC 3263 resolution of a registrar given by name.
        self.locate: Locate | None = None

    def configure(self, settings: Iterable[VendorRegistration]) -> None:
        """Follow the configuration: registrations added, changed or gone."""
        wanted: dict[int, RegistrationConfig] = {}
        for r in settings:
            default = Peer(r.gateway_transport, r.gateway_host, r.gateway_port or 5060)
            registrar, registrar_host, srv = _registrar(
                r.registrar, default, r.gateway_port is None and not is_ip(default.host))
            wanted[r.gateway_id] = RegistrationConfig(
                gateway_id=r.gateway_id,
                gateway_name=r.gateway_name,
                registrar=registrar,
                registrar_host=registrar_host,
                username=r.username,
                auth_username=r.auth_username or r.username,
                password=r.password or "",
                contact_host=r.host_name or self.stack.advertised_host,
                expire=r.expire,
                registrar_srv=srv,
            )
        self._apply(wanted)

    def _apply(self, wanted: dict[int, RegistrationConfig]) -> None:
        for gw_id in list(self.registrations):
            current = self.registrations[gw_id]
            if wanted.get(gw_id) == current.config:
                continue
            del self.registrations[gw_id]
            if self.started:
                # Disabled, removed or changed: the old registration goes away first.
                self.spawn(current.unregister(UNREGISTER_TIMEOUT))
        for gw_id, config in wanted.items():
            if gw_id not in self.registrations:
                registration = UpstreamRegistration(config, self.stack, self.params,
                                                    self.timers, self.locate)
                self.registrations[gw_id] = registration
                if self.started:
                    registration.start()

    def start(self) -> None:
        self.started = True
        for registration in self.registrations.values():
            registration.start()

    async def hand_over(self) -> None:
        """Another node of the cluster registers to the vendors from now on: ours end
        as at a graceful stop, and nothing restarts them until ``start``."""
        await self.shutdown()
        self.started = False

    async def shutdown(self) -> None:
        """Graceful stop: unregister everything (bounded) or just forget, per parameter."""
        if not self.started:  # a cluster node that never ran this job: nothing to undo
            return
        registrations = list(self.registrations.values())
        if not self.params.flag("SS_SIP_USER_AGENT_SEND_UNREGISTER"):
            for registration in registrations:
                registration.stop()
            return
        if registrations:
            log.info("unregistering from %d vendors", len(registrations))
        await asyncio.gather(*(r.unregister(UNREGISTER_TIMEOUT) for r in registrations))

    def vendor_for_call(self, source: Peer, user: str | None) -> int | None:
        """The routing gateway whose registrar sends a call to our registered contact."""
        for gw_id, registration in self.registrations.items():
            c = registration.config
            located = registration.located
            from_registrar = source.host == c.registrar.host or \
                (located is not None and source.host == located.host) or \
                source.host in self.vendor_addresses(gw_id)
            if from_registrar and user == c.username and self.registered(gw_id):
                return gw_id
        return None

    def registered(self, gw_id: int) -> bool:
        """Whether the registration to gateway ``gw_id`` holds. Signalling workers other
        than worker 0, which alone registers, read worker 0's published state."""
        if self.registered_elsewhere is not None:
            return self.registered_elsewhere(gw_id)
        registration = self.registrations.get(gw_id)
        return registration is not None and registration.state == "registered"

    def snapshot(self) -> list[dict[str, Any]]:
        return [r.snapshot() for r in self.registrations.values()]
