"""Pure parts of the media plane: splitting the port range between relay workers, and
the event-loop lag measure behind admission control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.calls.media import CallMedia
from b2bua.config.live import Params
from b2bua.looplag import WINDOW, LoopLag
from b2bua.media.plane import CipherSpec
from b2bua.media.relay import PortAllocator
from b2bua.options import split_ports


@given(st.integers(1024, 60000), st.integers(1, 5000), st.integers(1, 8))
def test_split_ports_gives_disjoint_even_slices_covering_every_pair(
        low: int, span: int, parts: int) -> None:
    high = min(65535, low + span)
    try:
        pairs = PortAllocator(low, high).capacity
    except ValueError:
        pairs = 0
    if pairs < parts:
        with pytest.raises(ValueError):
            split_ports(low, high, parts)
        return
    slices = split_ports(low, high, parts)
    assert len(slices) == parts
    allocated: list[int] = []
    for lo, hi in slices:
        assert lo % 2 == 0 and low <= lo < hi <= high
        allocated += list(PortAllocator(lo, hi)._free)
    assert sorted(allocated) == sorted(PortAllocator(low, high)._free)
    assert len(set(allocated)) == pairs
    sizes = [PortAllocator(lo, hi).capacity for lo, hi in slices]
    assert max(sizes) - min(sizes) <= 1


def test_one_pause_barely_moves_the_mean_a_slow_loop_moves_it_fully() -> None:
    lag = LoopLag()
    now = time.monotonic()
    samples = int(WINDOW / 0.05)
    for i in range(samples):
        lag.note(now - WINDOW + i * 0.05, 0.6 if i == samples // 2 else 0.001)
    assert lag.peak == pytest.approx(0.6)
    assert lag.mean < 0.05
    assert lag.worst == pytest.approx(0.6)
    slow = LoopLag()  # a loop that cannot keep up: every wake-up 0.4 s late
    for i in range(4):
        slow.note(now - WINDOW + 0.45 * (i + 1), 0.4)
    assert slow.mean == pytest.approx(0.4)


def test_loop_lag_measures_a_blocked_loop() -> None:
    async def body() -> tuple[float, float]:
        lag = LoopLag()
        task = asyncio.ensure_future(lag.run())
        await asyncio.sleep(0.2)
        calm = lag.peak
        for _ in range(5):
            time.sleep(0.12)  # a callback hogging the loop
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        task.cancel()
        return calm, lag.peak

    calm, busy = asyncio.run(body())
    assert calm < 0.05
    assert busy >= 0.1


class _RecordingSession:
    """Records the ciphers a call asks its relay session for."""

    def __init__(self, a_cipher: CipherSpec | None) -> None:
        self.ciphers: dict[str, CipherSpec | None] = {"a": a_cipher}

    def set_nat(self, leg: str, nat: bool) -> None:
        pass

    def set_cipher(self, leg: str, spec: CipherSpec | None) -> None:
        self.ciphers[leg] = spec


class _RecordingPlane:
    def new_session(self, *, latching: bool, a_nat: bool, a_cipher: CipherSpec | None,
                    on_rtp_start: Callable[[], None]) -> _RecordingSession:
        self.session = _RecordingSession(a_cipher)
        return self.session


def test_a_key_or_mode_change_applies_to_new_calls_only() -> None:
    """Both legs of a call, on every vendor attempt, keep the cipher in force when the
    call started: the far end of that call keeps its own until the call ends."""
    params = Params()
    params.values.update(SS_RTPENCRYPTIONMODE=3, SS_RTPENCRYPTIONKEY="0123456789abcdef")
    plane = _RecordingPlane()
    media = CallMedia(params, plane, "127.0.0.1", caller_nat=False,  # type: ignore[arg-type]
                      caller_encrypted=True, on_rtp_start=lambda: None)
    params.values.update(SS_RTPENCRYPTIONMODE=2, SS_RTPENCRYPTIONKEY="fedcba9876543210")
    media.set_destination(nat=False, encrypted=True)  # a failover attempt after the change
    assert plane.session.ciphers == {"a": (3, "0123456789abcdef"), "b": (3, "0123456789abcdef")}
    assert media.mode == 3  # what the CDR's media says
    later = CallMedia(params, plane, "127.0.0.1", caller_nat=False,  # type: ignore[arg-type]
                      caller_encrypted=True, on_rtp_start=lambda: None)
    assert plane.session.ciphers["a"] == (2, "fedcba9876543210") and later.mode == 2
