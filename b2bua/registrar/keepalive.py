"""NAT keep-alive: a raw UDP payload to every phone behind NAT, paced in batches.

A cycle starts every ``SS_SIP_NAT_KEEP_ALIVE_PERIOD`` seconds and walks the NAT
phones registered over UDP in batches of ``SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME``, with
``SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL`` milliseconds between batches. A cycle still
running when the next period starts is abandoned and the new cycle starts from the
beginning (VOS3000's rule); the phones it did not reach are counted as missed. An
empty ``SS_SIP_NAT_KEEP_ALIVE_MESSAGE`` disables it.

A phone registered through proxies (a Path) sits behind the first of them, which holds
its NAT mapping: a raw payload to that proxy would never reach the phone. It gets an
OPTIONS routed through its Path instead, in the same batches; the answer is not needed
(it comes back as a stray response and is dropped), the traffic is what keeps the
mapping open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from b2bua.config.live import Params
from b2bua.registrar.bindings import Binding, BindingStore
from b2bua.sip.dialog import first_hop, new_tag, route_request
from b2bua.sip.message import Request
from b2bua.sip.transaction import new_branch

log = logging.getLogger("b2bua.keepalive")

Send = Callable[[bytes, str, int], None]


@dataclass
class KeepAliveStats:
    cycles: int = 0
    completed: int = 0
    restarted: int = 0
    sent: int = 0
    missed_last_cycle: int = 0
    missed_total: int = 0
    phones_last_cycle: int = 0
    last_cycle_at: float = 0.0
    last_cycle_seconds: float = 0.0


def options_through_path(binding: Binding, sent_by: str, transport: str = "UDP") -> Request:
    """A keep-alive OPTIONS to a phone behind proxies: its Contact as the Request-URI,
    its Path as the Route (RFC 3327 5.3)."""
    request_uri, routes = route_request(list(binding.path), binding.contact)
    host = sent_by.rsplit(":", 1)[0]
    headers = [
        ("Via", f"SIP/2.0/{transport} {sent_by};branch={new_branch()};rport"),
        ("Max-Forwards", "70"),
        *[("Route", r) for r in routes],
        ("From", f"<sip:keepalive@{host}>;tag={new_tag()}"),
        ("To", f"<{binding.contact}>"),
        ("Call-ID", f"{new_tag()}{new_tag()}@{host}"),
        ("CSeq", "1 OPTIONS"),
        ("Content-Length", "0"),
    ]
    return Request("OPTIONS", request_uri, headers)


class KeepAlive:
    def __init__(self, params: Params, bindings: BindingStore, send: Send,
                 sent_by: Callable[[], str] = lambda: "") -> None:
        self.params = params
        self.bindings = bindings
        self.send = send
        self.sent_by = sent_by  # our Via sent-by, for the OPTIONS to phones behind proxies
        self.stats = KeepAliveStats()

    async def run(self) -> None:
        while True:
            message = str(self.params["SS_SIP_NAT_KEEP_ALIVE_MESSAGE"]).encode()
            if not message:
                await asyncio.sleep(1.0)
                continue
            started = time.monotonic()
            await self.cycle(message, started + self._period())
            # Re-read the period while waiting, so a change acts within half a second.
            while (remaining := started + self._period() - time.monotonic()) > 0:
                await asyncio.sleep(min(remaining, 0.5))

    def _period(self) -> float:
        return float(self.params.integer("SS_SIP_NAT_KEEP_ALIVE_PERIOD"))

    async def cycle(self, message: bytes, deadline: float) -> None:
        now = time.time()
        targets = [b for b in self.bindings.all()
                   if b.nat and b.source.transport == "udp" and b.expires_at > now]
        per_batch = self.params.integer("SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME")
        interval = self.params.integer("SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL") / 1000
        stats = self.stats
        stats.cycles += 1
        stats.phones_last_cycle = len(targets)
        stats.last_cycle_at = now
        began = time.monotonic()
        done = 0
        while done < len(targets):
            batch = targets[done:done + per_batch]
            for binding in batch:
                if binding.path:
                    probe = options_through_path(binding, self.sent_by()).to_bytes()
                    hop = first_hop(binding.path[0], binding.source)
                    self.send(probe, hop.host, hop.port)
                else:
                    self.send(message, binding.source.host, binding.source.port)
            stats.sent += len(batch)
            done += len(batch)
            if done >= len(targets):
                break
            if time.monotonic() + interval >= deadline:
                break
            await asyncio.sleep(interval)
        missed = len(targets) - done
        stats.missed_last_cycle = missed
        stats.last_cycle_seconds = round(time.monotonic() - began, 3)
        if missed:
            stats.restarted += 1
            stats.missed_total += missed
            log.warning("keep-alive cycle unfinished at the next period: %d of %d NAT phones "
                        "missed", missed, len(targets))
        else:
            stats.completed += 1

    def snapshot(self) -> dict[str, object]:
        return asdict(self.stats)
