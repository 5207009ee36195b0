"""The relay sessions of one call: opened, set and read for its adapter.

The call core (``b2bua/calls/anchor.py``) decides what each stream's legs get; this
holds the sessions of the media plane (in this process or a relay worker:
:mod:`b2bua.media.plane`) and applies those decisions to them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from b2bua.calls.anchor import (
    MediaSetup,
    SetCipher,
    SetNat,
    SetRemote,
    SetRtp,
    StreamUpdate,
)
from b2bua.media.plane import Counters, MediaPlane, MediaSession

log = logging.getLogger("b2bua.media")


class RtpSignal:
    """What the sessions call at the first RTP from the destination side: forwards to
    ``target`` until :meth:`RelaySessions.close` clears it, so that sessions kept by the
    relay a little longer do not keep the call's adapter alive through a cycle."""

    __slots__ = ("target",)

    def __init__(self, target: Callable[[], None]) -> None:
        self.target: Callable[[], None] | None = target

    def __call__(self) -> None:
        if self.target is not None:
            self.target()


class RelaySessions:
    """One session per stream of the call, in stream order."""

    __slots__ = ("_closed", "_signal", "plane", "sessions", "setup")

    def __init__(self, plane: MediaPlane, setup: MediaSetup,
                 on_rtp_start: Callable[[], None]) -> None:
        self.plane = plane
        self.setup = setup
        self._signal = RtpSignal(on_rtp_start)
        self.sessions: list[MediaSession] = []
        self._closed = False

    async def add(self, count: int) -> list[tuple[int, int]]:
        """Open and bind ``count`` more sessions; their ports. On failure every new one
        is closed and the error raised (no free port pair, a bind error)."""
        fresh = [self.plane.new_session(latching=self.setup.latching,
                                        a_nat=self.setup.caller_nat,
                                        a_cipher=self.setup.caller_cipher,
                                        on_rtp_start=self._signal)
                 for _ in range(count)]
        results = await asyncio.gather(*(s.start() for s in fresh), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None or self._closed:
            for session in fresh:
                session.close()
            if failure is not None:
                raise failure
            return []
        self.sessions += fresh
        return [s.ports for s in fresh]

    def apply(self, updates: list[StreamUpdate]) -> None:
        for update in updates:
            if update.stream >= len(self.sessions):
                continue  # a stream whose session is not bound (yet)
            session = self.sessions[update.stream]
            if isinstance(update, SetRemote):
                try:
                    session.set_remote(update.leg, update.host, update.port,
                                       update.rtcp_port, update.rtcp_host)
                except ValueError:  # not an address the relay can send to
                    if update.port:
                        log.info("media address %s not usable; stream %d not relayed",
                                 update.host, update.stream)
            elif isinstance(update, SetNat):
                session.set_nat(update.leg, update.nat)
            elif isinstance(update, SetCipher):
                session.set_cipher(update.leg, update.cipher)
            elif isinstance(update, SetRtp):
                session.set_rtp(update.rtp)

    def idle(self) -> dict[str, float | None]:
        """Per leg, seconds since any stream last received on it (None: never)."""
        now = time.monotonic()  # the relay's clock
        idle: dict[str, float | None] = {}
        for leg in ("a", "b"):
            heard = [t for s in self.sessions if (t := s.last_rx(leg)) is not None]
            idle[leg] = now - max(heard) if heard else None
        return idle

    def counters(self) -> list[Counters]:
        return [s.stats() for s in self.sessions]

    def close(self) -> None:
        self._closed = True
        self._signal.target = None
        for session in self.sessions:
            session.close()

    def finish(self, on_final: Callable[[list[Counters]], None]) -> None:
        """Close, and hand ``on_final`` every stream's final counters once they are in
        (at once in process; after the worker's last report otherwise)."""
        self._closed = True
        self._signal.target = None
        finals: dict[int, Counters] = {}
        count = len(self.sessions)
        if count == 0:
            on_final([])
            return

        def final(index: int, counters: Counters) -> None:
            finals[index] = counters
            if len(finals) == count:
                on_final([finals[i] for i in range(count)])

        for index, session in enumerate(self.sessions):
            session.close(functools.partial(final, index))
