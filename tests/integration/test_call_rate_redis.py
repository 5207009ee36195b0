"""Call rates across a cluster's nodes on a real redis-server (b2bua/cluster/shares.py's
``PACE_LUA``, ``SharedCounts.pace``, ``CallCounts.pace_shared``): one GCRA deadline per
limited thing on Redis's clock, so two nodes together admit what the rate and burst
allow, never more; Redis paused or killed, each node keeps to its share of the rate on
its own table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis
from redisserver import RedisServer

from b2bua.calls.counts import CallCounts
from b2bua.cluster import shares
from b2bua.cluster.shared_counts import SharedCounts


@asynccontextmanager
async def two_nodes(url: str) -> AsyncIterator[list[CallCounts]]:
    """Two nodes' counters (one worker each), once both see each other alive."""
    nodes = []
    for name in ("n1", "n2"):
        counts = CallCounts()
        counts.shared = SharedCounts(url, name, 0)
        await counts.shared.start()
        nodes.append(counts)
    sides = [node.shared for node in nodes if node.shared is not None]
    try:
        for _ in range(40):
            if all(s.usable and s.stats.live_nodes == 2 for s in sides):
                break
            await asyncio.sleep(0.1)
        assert all(s.usable and s.stats.live_nodes == 2 for s in sides)
        yield nodes
    finally:
        for side in sides:
            await side.close()


def server_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def test_the_script_keeps_one_deadline_on_redis_clock(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pace = client.register_script(shares.PACE_LUA)
    key = shares.rate_key("gateway", 9)
    # 1 call/s, burst 3: three at once, then the wait until the next (under a second).
    assert [pace(keys=[key], args=[1_000_000, 3]) for _ in range(3)] == [0, 0, 0]
    before = server_us(client)
    wait = int(pace(keys=[key], args=[1_000_000, 3]))
    assert 0 < wait <= 1_000_000
    tat = int(client.get(key) or 0)
    assert tat - before - 2_000_000 == pytest.approx(wait, abs=5_000)  # (burst-1) x T
    # The key lives until its deadline: a missing key is a full bucket again.
    assert 2_900 <= client.pttl(key) <= 3_000
    client.set(key, str(before), px=1)  # as if the deadline were over
    time.sleep(0.01)
    assert client.exists(key) == 0
    assert [pace(keys=[key], args=[1_000_000, 3]) for _ in range(4)][:3] == [0, 0, 0]


def test_two_nodes_take_exactly_the_burst_together(redis_server: RedisServer) -> None:
    async def run() -> list[float]:
        async with two_nodes(redis_server.url) as nodes:
            waits = await asyncio.gather(*(
                nodes[i % 2].pace_shared(("gateway", 1), 1, 40, time.monotonic())
                for i in range(60)))
            stats = [n.shared.stats for n in nodes if n.shared is not None]
            assert sum(s.rate_admitted for s in stats) == 40
            assert sum(s.rate_refused for s in stats) == 20
            assert sum(s.rate_by_share for s in stats) == 0
            assert all(s.rate_admitted for s in stats)  # both took some (30 offers each)
            return waits

    waits = asyncio.run(run())
    assert waits.count(0.0) == 40
    # The 41st call at the earliest a second after the first (the burst spent at once).
    assert all(0 < wait <= 1.0 for wait in waits if wait)


def test_two_nodes_offering_for_two_seconds_keep_to_the_rate(redis_server: RedisServer) -> None:
    rate, burst, interval = 50, 10, 20_000  # 50 calls/s: one per 20 ms
    key = ("routing", 3)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    redis_key = shares.rate_key(*key)

    async def offer(node: CallCounts, until: float) -> int:
        admitted = 0
        while time.monotonic() < until:
            admitted += await node.pace_shared(key, rate, burst, time.monotonic()) == 0.0
        return admitted

    async def run() -> tuple[int, int, int, int]:
        async with two_nodes(redis_server.url) as nodes:
            # A call admitted at t0 by hand: the deadline starts at a time we know.
            t0 = server_us(client)
            client.set(redis_key, str(t0 + interval), px=1000)
            until = time.monotonic() + 2.0
            counts = await asyncio.gather(*(offer(node, until) for node in nodes))
            with client.pipeline(transaction=True) as pipe:
                pipe.get(redis_key)
                pipe.time()
                tat, (seconds, micros) = pipe.execute()
            sides = [n.shared for n in nodes if n.shared is not None]
            assert all(s.stats.errors == 0 and s.stats.rate_by_share == 0 for s in sides)
            assert all(counts)  # both nodes' calls among them
            return t0, int(tat), int(seconds) * 1_000_000 + int(micros), sum(counts)

    t0, tat, t_end, admitted = asyncio.run(run())
    calls = admitted + 1  # with the one at t0
    # Each admission, whichever node asked, moved the one deadline by exactly one interval
    # (offers come every fraction of a millisecond: the bucket is never idle).
    assert tat == t0 + calls * interval
    # The k-th call (0 at t0) needs t0 + k x T - now <= (burst - 1) x T: over the run, at
    # most rate x time + burst, and the offers were dense enough to take all of that but
    # the edge (the last interval, and the few ms between the last offer and t_end).
    most = (t_end - t0) // interval + burst
    assert most - 2 <= calls <= most
    assert redis_key not in client.smembers(f"{shares.PREFIX}counters")  # not a counter


def test_redis_slow_or_gone_each_node_keeps_to_its_share(redis_server: RedisServer) -> None:
    # 10 calls/s with a burst of 4 over two nodes: while Redis cannot say, each node
    # admits 5/s with a burst of 2 on its own table.
    clocks = [500.0 + k / 100 for k in range(100)]  # one second, 100 offers

    async def run() -> None:
        async with two_nodes(redis_server.url) as nodes:
            first, second = nodes
            assert await first.pace_shared(("phone", 8), 10, 4, 400.0) == 0.0  # by Redis
            # Redis stalls (every client paused 1.5 s): the answer is not waited for
            # beyond ADMIT_WAIT, and this node's share decides.
            with redis.Redis.from_url(redis_server.url) as pauser:
                pauser.execute_command("CLIENT", "PAUSE", 1500, "ALL")
            started = time.monotonic()
            assert await first.pace_shared(("phone", 8), 10, 4, 400.0) == 0.0
            assert time.monotonic() - started < 1.0  # ADMIT_WAIT at most, not the pause
            assert first.shared is not None and first.shared.stats.rate_by_share == 1
            redis_server.kill()
            for _ in range(40):
                if all(n.shared is not None and n.shared.stats.state == "down"
                       for n in nodes):
                    break
                await asyncio.sleep(0.1)
            admitted = []
            for node in nodes:
                assert node.shared is not None and node.shared.stats.state == "down"
                before = node.shared.stats.rate_by_share
                admitted.append(sum([await node.pace_shared(("phone", 8), 10, 4, now) == 0.0
                                     for now in clocks]))
                assert node.shared.stats.rate_by_share == before + 100
            # Each: 5/s over [0, 1 s) with a burst of 2 is 5 + 2 - 1 = 6 (the local
            # deadline left by the paused call, at 400.2, is long past at 500).
            assert admitted == [6, 6]
            assert second.pace(("phone", 8), 5, 2, 501.0) == 0.0  # the same table

    asyncio.run(run())
