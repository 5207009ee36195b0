"""NAT keep-alive: a raw UDP payload to every phone behind NAT, paced in batches.

A cycle starts every ``SS_SIP_NAT_KEEP_ALIVE_PERIOD`` seconds and walks the NAT
phones registered over UDP in batches of ``SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME``, with
``SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL`` milliseconds between batches. A cycle still
running when the next period starts is abandoned and the new cycle starts from the
beginning (VOS3000's rule); the phones it did not reach are counted as missed. An
empty ``SS_SIP_NAT_KEEP_ALIVE_MESSAGE`` disables it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from b2bua.config.live import Params
from b2bua.registrar.bindings import BindingStore

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


class KeepAlive:
    def __init__(self, params: Params, bindings: BindingStore, send: Send) -> None:
        self.params = params
        self.bindings = bindings
        self.send = send
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
        targets = [b.source for b in self.bindings.all()
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
            for peer in batch:
                self.send(message, peer.host, peer.port)
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
