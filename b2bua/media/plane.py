"""The media plane as the call layer sees it: relay sessions behind one small interface.

Two implementations: :class:`LocalMediaPlane` runs the relay in the engine's own event
loop (``--media-workers 0``), :class:`b2bua.media.pool.RelayWorkerPool` in worker
processes, one per core, so relaying scales past the one core the signalling uses. The
call layer (:mod:`b2bua.calls.anchor`) does not know which one it has.

A session's legs are named ``"a"`` (the caller side) and ``"b"`` (the destination side).
Ciphers travel as a :data:`CipherSpec` (mode, key) so a worker can build its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from b2bua.media.cipher import PayloadCipher, make_cipher
from b2bua.media.relay import PortAllocator, RelayLeg, RelaySession

CipherSpec = tuple[int, str]  # (SS_RTPENCRYPTIONMODE, SS_RTPENCRYPTIONKEY)
Counters = dict[str, dict[str, int]]  # {"a_to_b": {...}, "b_to_a": {...}}
FinalStats = Callable[[Counters], None]


class MediaSession(Protocol):
    @property
    def ports(self) -> tuple[int, int]: ...

    async def start(self) -> None: ...

    def set_remote(self, leg: str, host: str, port: int, rtcp_port: int | None = None,
                   rtcp_host: str | None = None) -> None: ...

    def set_nat(self, leg: str, nat: bool) -> None: ...

    def set_cipher(self, leg: str, spec: CipherSpec | None) -> None: ...

    def set_rtp(self, rtp: bool) -> None:
        """False: the stream is not RTP (T.38 UDPTL), relayed without RTP checks."""

    def last_rx(self, leg: str) -> float | None: ...

    def stats(self) -> Counters: ...

    def close(self, on_final: FinalStats | None = None) -> None:
        """Close; ``on_final`` gets the final counters once known (for the CDR)."""


class MediaPlane(Protocol):
    def new_session(self, *, latching: bool, a_nat: bool, a_cipher: CipherSpec | None,
                    on_rtp_start: Callable[[], None]) -> MediaSession: ...

    @property
    def in_use(self) -> int:
        """Port pairs in use (two per session)."""

    @property
    def available(self) -> int: ...

    def snapshot(self) -> dict[str, object]:
        """Workers, their sessions and event-loop lag, for the control channel."""

    def overloaded(self) -> bool:
        """No relay has room for a new call (every worker's loop over the lag limit)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def build_cipher(spec: CipherSpec | None) -> PayloadCipher | None:
    return None if spec is None else make_cipher(spec[0], spec[1])


class LocalMediaSession:
    """A :class:`RelaySession` in this process."""

    def __init__(self, session: RelaySession) -> None:
        self.session = session

    @property
    def ports(self) -> tuple[int, int]:
        return self.session.ports

    async def start(self) -> None:
        await self.session.start()

    def _leg(self, leg: str) -> RelayLeg:
        return self.session.a if leg == "a" else self.session.b

    def set_remote(self, leg: str, host: str, port: int, rtcp_port: int | None = None,
                   rtcp_host: str | None = None) -> None:
        self._leg(leg).set_remote(host, port, rtcp_port, rtcp_host)

    def set_nat(self, leg: str, nat: bool) -> None:
        self._leg(leg).nat = nat

    def set_cipher(self, leg: str, spec: CipherSpec | None) -> None:
        self._leg(leg).set_cipher(build_cipher(spec))

    def set_rtp(self, rtp: bool) -> None:
        self.session.rtp = rtp

    def last_rx(self, leg: str) -> float | None:
        relay_leg = self._leg(leg)
        relay_leg.sync()
        return relay_leg.last_rx

    def stats(self) -> Counters:
        return self.session.stats()

    def close(self, on_final: FinalStats | None = None) -> None:
        self.session.close()
        if on_final is not None:
            on_final(self.session.stats())


class LocalMediaPlane:
    """Relay sessions in the engine's event loop, ports from one allocator."""

    def __init__(self, host: str, advertised_host: str, low: int, high: int, *,
                 relay_ciphers: str = "c") -> None:
        self.host = host
        self.ciphers_in_c = relay_ciphers == "c"
        self.advertised_host = advertised_host
        self.allocator = PortAllocator(low, high)

    def new_session(self, *, latching: bool, a_nat: bool, a_cipher: CipherSpec | None,
                    on_rtp_start: Callable[[], None]) -> LocalMediaSession:
        return LocalMediaSession(RelaySession(
            self.allocator, self.host, advertised_host=self.advertised_host,
            latching=latching, a_nat=a_nat, a_cipher=build_cipher(a_cipher),
            on_rtp_start=on_rtp_start, start_leg="b", ciphers_in_c=self.ciphers_in_c))

    @property
    def in_use(self) -> int:
        return self.allocator.in_use

    @property
    def available(self) -> int:
        return self.allocator.available

    def snapshot(self) -> dict[str, object]:
        return {"workers": [], "ports_in_use": self.in_use, "ports_free": self.available}

    def overloaded(self) -> bool:
        return False  # the engine's own loop lag covers a relay in its loop

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
