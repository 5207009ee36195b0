"""A fake media plane for the call layer's tests, and the media of one call as its core
and its adapter handle it together.

:class:`FakeSession` records what is asked of it (remote addresses, NAT flags, ciphers,
RTP or not), has fixed ports, answers ``last_rx`` with times the test chooses and reports
counters of the shape ``b2bua.media.plane.Counters``; :class:`FakePlane` hands them out.
:class:`AnchoredMedia` is the pure anchor (``b2bua/calls/anchor.py``) and the call's
relay sessions (``b2bua/aio/call_media.py``) wired as the call adapter wires them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from b2bua.aio.call_media import RelaySessions
from b2bua.calls.anchor import MediaAnchor, MediaTotals
from b2bua.config.live import Params
from b2bua.media.plane import CipherSpec, Counters, FinalStats
from b2bua.media.relay import COUNTERS, counters_dict


def leg_counters(packets: int = 0, octets: int = 0, *, malformed: int = 0, foreign: int = 0,
                 dropped: int = 0, in_c: int = 0, cipher_errors: int = 0) -> dict[str, int]:
    values = dict.fromkeys(COUNTERS, 0)
    values.update(rx_packets=packets, rx_bytes=octets, rx_malformed=malformed,
                  rx_foreign=foreign, send_dropped=dropped, rx_in_c=in_c,
                  cipher_errors=cipher_errors)
    return counters_dict(tuple(values[name] for name in COUNTERS))


def counters(a_to_b: dict[str, int] | None = None,
             b_to_a: dict[str, int] | None = None) -> Counters:
    return {"a_to_b": a_to_b or leg_counters(), "b_to_a": b_to_a or leg_counters()}


class FakeSession:
    """One relay session: records every call made to it, opens nothing."""

    def __init__(self, ports: tuple[int, int], *, latching: bool, a_nat: bool,
                 a_cipher: CipherSpec | None, on_rtp_start: Callable[[], None]) -> None:
        self._ports = ports
        self.latching = latching
        self.on_rtp_start = on_rtp_start
        self.nat: dict[str, bool] = {"a": a_nat}
        self.ciphers: dict[str, CipherSpec | None] = {"a": a_cipher}
        self.remotes: dict[str, tuple[str, int, int | None, str | None]] = {}
        self.calls: list[tuple[object, ...]] = []  # every setter call, in order
        self.rtp = True
        self.rx: dict[str, float | None] = {"a": None, "b": None}
        self.live: Counters = counters()
        self.final: Counters = counters()
        self.start_error: BaseException | None = None
        self.bad_hosts: set[str] = set()
        self.started = 0
        self.closed = 0
        self.defer_final = False  # True: close() keeps on_final for deliver_final()
        self.pending: FinalStats | None = None

    @property
    def ports(self) -> tuple[int, int]:
        return self._ports

    async def start(self) -> None:
        await asyncio.sleep(0)
        self.started += 1
        if self.start_error is not None:
            raise self.start_error

    def set_remote(self, leg: str, host: str, port: int, rtcp_port: int | None = None,
                   rtcp_host: str | None = None) -> None:
        if host in self.bad_hosts:
            raise ValueError(f"{host} is not an IP literal")
        self.calls.append(("remote", leg, host, port, rtcp_port, rtcp_host))
        self.remotes[leg] = (host, port, rtcp_port, rtcp_host)

    def set_nat(self, leg: str, nat: bool) -> None:
        self.calls.append(("nat", leg, nat))
        self.nat[leg] = nat

    def set_cipher(self, leg: str, spec: CipherSpec | None) -> None:
        self.calls.append(("cipher", leg, spec))
        self.ciphers[leg] = spec

    def set_rtp(self, rtp: bool) -> None:
        self.calls.append(("rtp", rtp))
        self.rtp = rtp

    def last_rx(self, leg: str) -> float | None:
        return self.rx[leg]

    def stats(self) -> Counters:
        return self.live

    def close(self, on_final: FinalStats | None = None) -> None:
        self.closed += 1
        if on_final is None:
            return
        if self.defer_final:
            self.pending = on_final
        else:
            on_final(self.final)

    def deliver_final(self) -> None:
        assert self.pending is not None
        pending, self.pending = self.pending, None
        pending(self.final)


class FakePlane:
    """Hands out FakeSessions with ports 40000 + 4n (leg a) and 40002 + 4n (leg b)."""

    def __init__(self) -> None:
        self.sessions: list[FakeSession] = []
        self.fail: dict[int, BaseException] = {}  # session number -> what start() raises

    def new_session(self, *, latching: bool, a_nat: bool, a_cipher: CipherSpec | None,
                    on_rtp_start: Callable[[], None]) -> FakeSession:
        n = len(self.sessions)
        session = FakeSession((40000 + 4 * n, 40002 + 4 * n), latching=latching,
                              a_nat=a_nat, a_cipher=a_cipher, on_rtp_start=on_rtp_start)
        session.start_error = self.fail.get(n)
        self.sessions.append(session)
        return session



class AnchoredMedia:
    """One call's media: the anchor's decisions applied to its sessions, in the order
    the call adapter applies them (``UpdateMedia`` before the message that needs it)."""

    def __init__(self, params: Params, plane: FakePlane, advertised_host: str, *,
                 caller_nat: bool, caller_encrypted: bool,
                 on_rtp_start: Callable[[], None], totals: MediaTotals | None = None,
                 streams: int = 1) -> None:
        self.anchor = MediaAnchor(params, advertised_host, caller_nat=caller_nat,
                                  caller_encrypted=caller_encrypted, streams=streams)
        self.plane = plane
        self.relay = RelaySessions(plane, self.anchor.setup, on_rtp_start)  # type: ignore[arg-type]
        self.totals = totals

    def __getattr__(self, name: str) -> Any:
        return getattr(self.anchor, name)

    async def start(self) -> None:
        await self._bind(self.anchor.unstarted)

    async def grow(self, count: int) -> None:
        await self._bind(self.anchor.grow(count))

    async def _bind(self, count: int) -> None:
        try:
            ports = await self.relay.add(count)
        except BaseException:
            self.anchor.not_started(count)
            raise
        self.relay.apply(self.anchor.started(ports))

    def set_destination(self, nat: bool, encrypted: bool) -> None:
        self.relay.apply(self.anchor.set_destination(nat, encrypted))

    def from_caller(self, body: bytes) -> bytes:
        out, updates = self.anchor.from_caller(body)
        self.relay.apply(updates)
        return out

    def from_callee(self, body: bytes) -> bytes:
        out, updates = self.anchor.from_callee(body)
        self.relay.apply(updates)
        return out

    def watch(self) -> None:
        self.anchor.watch(time.monotonic())

    def silent_direction(self, checks: dict[str, str], timeout: float) -> str | None:
        return self.anchor.silent_direction(checks, timeout, time.monotonic(),
                                            self.relay.idle())

    def on_rtp_start(self) -> None:
        self.relay._signal()

    def stats(self, counters: list[Counters] | None = None) -> dict[str, Any]:
        return self.anchor.stats(self.relay.counters() if counters is None else counters)

    def close(self) -> None:
        self.relay.close()

    def finish(self, on_final: Callable[[dict[str, Any]], None]) -> None:
        def final(counters: list[Counters]) -> None:
            stats = self.anchor.stats(counters)
            if self.totals is not None:
                self.totals.add(stats)
            on_final(stats)

        self.relay.finish(final)
