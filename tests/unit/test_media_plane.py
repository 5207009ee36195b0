"""Pure parts of the media plane: splitting the port range between relay workers, and
the event-loop lag measure behind admission control."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.looplag import WINDOW, LoopLag
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
