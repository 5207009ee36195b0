"""Call rates (calls per second with a burst) behind the counters: the GCRA of
``Tally.pace`` (b2bua/_tally.c) and ``CallCounts.pace`` (b2bua/calls/counts.py) on explicit
clock values, exact across real processes racing on one shared table, the share a
cluster node keeps to while Redis is away (b2bua/cluster/shares.py) and the fallback of
``CallCounts.pace_shared`` (b2bua/cluster/shared_counts.py) without Redis. The Redis
script itself: tests/integration/test_call_rate_redis.py."""

from __future__ import annotations

import asyncio
import math
import mmap
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua._tally import Tally
from b2bua.calls import counts as counts_module
from b2bua.calls.counts import MAX_BURST, MAX_INTERVAL_US, SLOTS, CallCounts, pacing
from b2bua.cluster import shares
from b2bua.cluster.shared_counts import SharedCounts
from b2bua.shared_tables import shared_memory, table_size

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)


def gcra(tat: int, now: int, interval: int, burst: int) -> tuple[int, int]:
    """The rule, as the brief states it: (wait, new TAT); wait 0 is an admission."""
    base = max(tat, now)
    wait = base - now - (burst - 1) * interval
    return (wait, tat) if wait > 0 else (0, base + interval)


def offers(counts: CallCounts, key: counts_module.Key, rate: float, burst: int,
           clocks: list[float]) -> int:
    return sum(counts.pace(key, rate, burst, now) == 0.0 for now in clocks)


# -- the rule, on explicit clock values -------------------------------------------------------


def test_a_burst_then_the_rate() -> None:
    counts = CallCounts()
    key = ("gateway", 7)
    # Rate 10/s, burst 3: three at once, the fourth 0.1 s later at the earliest.
    assert [counts.pace(key, 10, 3, 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert counts.pace(key, 10, 3, 100.0) == pytest.approx(0.1)
    assert counts.pace(key, 10, 3, 100.05) == pytest.approx(0.05)
    assert counts.pace(key, 10, 3, 100.1) == 0.0  # one interval on: one more
    assert counts.pace(key, 10, 3, 100.1) == pytest.approx(0.1)
    assert counts.pace(key, 10, 3, 100.2) == 0.0
    # Steady: one every 0.1 s from then on, never two.
    for step in range(3, 50):
        now = 100.0 + step / 10
        assert counts.pace(key, 10, 3, now) == 0.0
        assert counts.pace(key, 10, 3, now) > 0
    # Idle for a while: the burst is back, no more.
    assert [counts.pace(key, 10, 3, 200.0) for _ in range(4)][3] == pytest.approx(0.1)


def test_refusals_say_how_long_until_the_next_call() -> None:
    counts = CallCounts()
    key = ("routing", 2)
    assert counts.pace(key, 10, 1, 0.0) == 0.0
    assert counts.pace(key, 10, 1, 0.03) == pytest.approx(0.07)
    assert counts.pace(key, 10, 1, 0.0999) == pytest.approx(0.0001)
    assert counts.pace(key, 10, 1, 0.1) == 0.0
    # Half a call a second: refused 0.5 s after one, the next in 1.5 s (Retry-After 2).
    slow = ("phone", 3)
    assert counts.pace(slow, 0.5, 1, 10.0) == 0.0
    wait = counts.pace(slow, 0.5, 1, 10.5)
    assert wait == pytest.approx(1.5) and max(1, math.ceil(wait)) == 2
    # A refusal takes nothing: asking again later is answered as if it never came.
    assert counts.pace(slow, 0.5, 1, 11.99) == pytest.approx(0.01)
    assert counts.pace(slow, 0.5, 1, 12.0) == 0.0


def test_thirty_seconds_of_twenty_offers_a_second() -> None:
    # Offers at k/20 s, k = 0..599 (30 s, the end excluded). Rate 10, burst 1: the offer
    # at every 0.1 s and none between, exactly 10 x 30 = 300. Burst 5: the rate's 300
    # plus the 4 calls the burst lets in ahead of it (rate x time + burst - 1 over a
    # half-open window; the 305th would be at 30.0, outside it).
    clocks = [1000.0 + k / 20 for k in range(600)]
    assert offers(CallCounts(), ("gateway", 1), 10, 1, clocks) == 300
    assert offers(CallCounts(), ("gateway", 1), 10, 5, clocks) == 304
    assert offers(CallCounts(), ("gateway", 1), 10, 5, [*clocks, 1030.0]) == 305
    # Fewer offers than the rate: every one admitted.
    assert offers(CallCounts(), ("gateway", 1), 30, 1, clocks) == 600


def test_rates_are_per_limited_thing_and_apart_from_counts() -> None:
    counts = CallCounts()
    assert counts.pace(("gateway", 1), 1, 1, 5.0) == 0.0
    assert counts.pace(("gateway", 1), 1, 1, 5.0) > 0
    assert counts.pace(("gateway", 2), 1, 1, 5.0) == 0.0  # another gateway
    for kind in ("phone", "vendor", "routing"):  # the same id under another kind
        assert counts.pace((kind, 1), 1, 1, 5.0) == 0.0
    assert counts[("gateway", 1)] == 0  # no call counted up
    assert counts.admit(("gateway", 1), 1) and counts[("gateway", 1)] == 1
    assert counts.pace(("gateway", 1), 1, 1, 5.5) == pytest.approx(0.5)


def test_bad_arguments_are_errors() -> None:
    counts = CallCounts()
    for rate in (0, -1.0, math.nan, -math.inf):
        with pytest.raises(ValueError):
            counts.pace(("gateway", 1), rate, 1, 0.0)
    with pytest.raises(ValueError):
        counts.pace(("gateway", 1), 10, 0, 0.0)
    with pytest.raises(ValueError):
        counts.pace(("retry_ms", 1), 10, 1, 0.0)  # not a thing a rate limits
    with pytest.raises(ValueError):
        asyncio.run(counts.pace_shared(("gateway", 1), 0, 1, 0.0))
    tally = Tally(mmap.mmap(-1, 8 * 2 * 4), 1, 0)
    for interval, burst in ((0, 1), (-5, 1), (100, 0), (100, -(1 << 63))):
        with pytest.raises(ValueError):
            tally.pace(1, 0, interval, burst)
    with pytest.raises(ValueError):
        tally.pace(0, 0, 100, 1)  # key 0 marks a free slot
    with pytest.raises(OverflowError):
        tally.pace(1, 1 << 63, 100, 1)  # not a 64-bit clock value
    assert tally.used() == (0, 4)  # nothing inserted by a refused call


def test_the_rate_in_microseconds() -> None:
    assert pacing(10, 1) == (100_000, 1)
    assert pacing(3, 2) == (333_333, 2)
    assert pacing(1e9, 1) == (1, 1)  # never below a microsecond
    assert pacing(math.inf, 1) == (1, 1)
    assert pacing(1e-12, 1) == (MAX_INTERVAL_US, 1)  # never above a day
    assert pacing(1, 10**9) == (1_000_000, MAX_BURST)


def test_a_full_table_lets_calls_through_and_counts_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tally = Tally(mmap.mmap(-1, 8 * 2 * 4), 1, 0)  # four slots, one worker
    for key in range(1, 5):
        assert tally.pace(key, 0, 100, 1) == 0
    with pytest.raises(OverflowError):
        tally.pace(99, 0, 100, 1)
    assert tally.pace(1, 0, 100, 1) == 100  # the keys in it still paced
    monkeypatch.setattr(counts_module, "SLOTS", 2)
    counts = CallCounts()
    assert counts.pace(("gateway", 1), 1, 1, 0.0) == 0.0
    assert counts.pace(("gateway", 2), 1, 1, 0.0) == 0.0
    assert counts.usage() == (2, 2) and counts.overflows == 0
    assert [counts.pace(("gateway", 3), 1, 1, 0.0) for _ in range(3)] == [0.0] * 3
    assert counts.overflows == 3
    assert counts.pace(("gateway", 1), 1, 1, 0.0) == 1.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 40), st.integers(1, 1 << 20),
                          st.integers(1, 1000)), min_size=1, max_size=40))
def test_the_table_keeps_to_the_rule(calls: list[tuple[int, int, int]]) -> None:
    tally = Tally(mmap.mmap(-1, 8 * 3 * 16), 2, 1)
    tat = 0
    for now, interval, burst in calls:
        wait, tat = gcra(tat, now, interval, burst)
        assert tally.pace(42, now, interval, burst) == wait


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(INT64, st.integers(1, (1 << 63) - 1),
                          st.integers(1, (1 << 63) - 1)), min_size=1, max_size=10))
def test_no_clock_value_or_rate_breaks_it(calls: list[tuple[int, int, int]]) -> None:
    tally = Tally(mmap.mmap(-1, 8 * 2 * 4), 1, 0)
    for now, interval, burst in calls:
        assert 0 <= tally.pace(7, now, interval, burst) < 1 << 63


# -- exact across processes --------------------------------------------------------------------

RACER = """
import sys, time
from b2bua.calls.counts import CallCounts
fd, workers, worker, start_at, n, step, rate, burst = sys.argv[1:]
counts = CallCounts(int(fd), int(workers), int(worker))
clocks = [k * float(step) for k in range(int(n))]
while time.time() < float(start_at):  # all start together, to race
    pass
print(sum(counts.pace(("routing", 1), float(rate), int(burst), now) == 0.0
          for now in clocks))
"""


@pytest.mark.parametrize(("n", "step", "rate", "burst"), [
    (600, 0.05, 10, 1),  # the 30 s of 20 offers a second: 300 in all
    (150_000, 50e-6, 10_000, 1),  # racing hard: twice as many offers as the rate
    (150_000, 30e-6, 12_000, 7),  # offers off the rate's grid, with a burst
])
def test_racing_processes_admit_what_one_would(n: int, step: float, rate: float,
                                               burst: int) -> None:
    # Every process offers the same clock values, in order, as fast as it can: the
    # processes together admit exactly what one process offering them once admits.
    clocks = [k * step for k in range(n)]
    alone = offers(CallCounts(), ("routing", 1), rate, burst, clocks)
    if n == 600:
        assert alone == 300
    fd = shared_memory(table_size(4, SLOTS))
    try:
        start_at = time.time() + 1.0
        procs = [subprocess.Popen(
            [sys.executable, "-c", RACER, str(fd), "4", str(worker), str(start_at), str(n),
             repr(step), repr(rate), str(burst)],
            pass_fds=(fd,), stdout=subprocess.PIPE, text=True) for worker in range(4)]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0]
        assert sum(int(out) for out in outputs) == alone
    finally:
        os.close(fd)


CLOCK_RACER = """
import sys, time
from b2bua.calls.counts import CallCounts
fd, worker, start_at, end_at = sys.argv[1:]
counts = CallCounts(int(fd), 4, int(worker))
while time.monotonic() < float(start_at):
    pass
admitted = 0
while (now := time.monotonic()) < float(end_at):
    admitted += counts.pace(("routing", 1), 100, 5000, now) == 0.0
print(admitted)
"""


def test_racing_processes_on_one_clock_move_the_deadline_once_per_call() -> None:
    # Four processes on the clock they share, as fast as they can, for a bucket of 5000
    # at 100/s: they take the burst together within milliseconds, the swaps of the one
    # deadline contended, then the rate's calls. Each admission moved the deadline by
    # exactly one interval (the bucket is never idle: it would take 50 s), so the
    # deadline says how many were admitted, whatever the interleaving.
    fd = shared_memory(table_size(4, SLOTS))
    try:
        counts = CallCounts(fd, 4, 0)
        start_at = time.monotonic() + 3.0  # after four interpreters start, even on a busy box
        assert counts.pace(("routing", 1), 100, 5000, start_at) == 0.0  # TAT: +10 ms
        procs = [subprocess.Popen(
            [sys.executable, "-c", CLOCK_RACER, str(fd), str(worker), repr(start_at),
             repr(start_at + 0.3)], pass_fds=(fd,), stdout=subprocess.PIPE, text=True)
            for worker in range(4)]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0]
        admitted = sum(int(out) for out in outputs)
        tat = counts._tally.total(counts._key(("rate_routing", 1)))
        assert tat == round(start_at * 1_000_000) + (1 + admitted) * 10_000
        # Never more than the burst and 0.3 s at 100/s (the seed's call among them), give
        # or take the one at the window's edge and the clock's rounding to microseconds.
        assert 5000 <= admitted + 1 <= 5000 + 31
    finally:
        os.close(fd)


# -- a cluster node's share while Redis is away -----------------------------------------------


@given(st.integers(1, MAX_INTERVAL_US), st.integers(1, MAX_BURST), st.integers(0, 64))
def test_the_shares_never_add_up_to_more_than_the_rate(interval: int, burst: int,
                                                       live: int) -> None:
    share_us, share_burst = shares.pace_share(interval, burst, live)
    nodes = max(live, 1)
    assert share_us >= interval and share_burst >= 1
    assert share_us <= max(interval, shares.SHARE_INTERVAL_CAP_US)  # the floor
    if interval * nodes <= shares.SHARE_INTERVAL_CAP_US:  # above the floor: exact shares
        assert share_us == interval * nodes  # nodes x (1 / share) == the rate
    if burst >= nodes:
        assert share_burst * nodes <= burst


def test_share_examples() -> None:
    assert shares.pace_share(100_000, 10, 2) == (200_000, 5)  # 10/s burst 10, two nodes
    assert shares.pace_share(100_000, 10, 0) == (100_000, 10)  # nobody else known alive
    assert shares.pace_share(1_000_000, 3, 64) == (10_000_000, 1)  # 1/s: the 10 s floor
    assert shares.pace_share(60_000_000, 1, 3) == (60_000_000, 1)  # slower than the floor
    assert shares.rate_key("gateway", 7) == "ss:rate:gateway:7"


def test_without_shared_counters_pace_shared_is_pace() -> None:
    counts = CallCounts()

    async def run() -> list[float]:
        return [await counts.pace_shared(("phone", 4), 10, 2, 50.0) for _ in range(3)]

    assert asyncio.run(run()) == [0.0, 0.0, pytest.approx(0.1)]


def test_redis_not_reached_yet_a_node_keeps_to_its_share() -> None:
    # A node whose Redis is not up decides on its own table with its share: 10/s burst 4
    # over two live nodes is 5/s burst 2 here. Nothing is sent to Redis.
    counts = CallCounts()
    shared = SharedCounts("redis://127.0.0.1:9/0", "n1", 0)  # never started
    shared.stats.live_nodes = 2
    counts.shared = shared

    async def run() -> list[float]:
        return [await counts.pace_shared(("gateway", 5), 10, 4, 7.0) for _ in range(3)]

    assert asyncio.run(run()) == [0.0, 0.0, pytest.approx(0.2)]
    assert counts.pace(("gateway", 5), 5, 2, 7.2) == 0.0  # the same table, the same key
    assert (shared.stats.rate_by_share, shared.stats.rate_admitted,
            shared.stats.rate_refused) == (3, 2, 1)
    assert shared.stats.admissions == shared.stats.refused == shared.stats.by_share == 0
    assert not shared._queue
