"""The cluster's live counters on a real redis-server (b2bua/cluster/shares.py and
shared_counts.py, docs/cluster.md): the admission script never passes a capacity
whoever asks at once, counts only live nodes and drops the dead ones' fields; a node's
adapter admits exactly through Redis, by its share while Redis is gone, and writes its
counts back when Redis returns empty."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis
from redisserver import RedisServer
from support import Softswitch, wait_until

from b2bua.cluster import shares
from b2bua.cluster.shared_counts import SharedCounts


def test_the_admission_script_counts_live_nodes_only(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    admit = client.register_script(shares.ADMIT_LUA)
    key = shares.counter_key("gateway", 7)
    prefix = shares.liveness_key("")
    client.set(shares.liveness_key("b"), "1", px=shares.LIVENESS_MS)
    client.hset(key, mapping={"b/0": 2, "b/1": 1, "gone/0": 5})  # "gone" has no key
    assert admit(keys=[key], args=["a/0", 4, prefix]) == 1  # 3 + 0 < 4
    assert client.hgetall(key) == {"b/0": "2", "b/1": "1", "a/0": "1"}  # gone's dropped
    assert admit(keys=[key], args=["a/0", 4, prefix]) == 0  # 4 = capacity
    client.delete(shares.liveness_key("b"))  # b died: its places are free
    assert admit(keys=[key], args=["a/0", 4, prefix]) == 1
    assert client.hgetall(key) == {"a/0": "2"}
    others = client.register_script(shares.OTHERS_LUA)
    client.set(shares.liveness_key("c"), "1", px=shares.LIVENESS_MS)
    client.hset(key, "c/0", 3)
    client.hset(shares.counter_key("retry_ms", 1), mapping={"c/0": 900, "c/1": 1200})
    assert others(keys=[key, shares.counter_key("retry_ms", 1)], args=["a", prefix]) == \
        [3, 3, 2100, 1200]


def test_concurrent_admissions_from_two_nodes_never_pass_the_capacity(
        redis_server: RedisServer) -> None:
    async def run() -> tuple[list[bool], list[bool]]:
        nodes = [SharedCounts(redis_server.url, name, 0) for name in ("b", "a")]
        for node in nodes:
            await node.start()
        try:
            for _ in range(40):  # both see each other alive
                if all(n.usable and n.stats.live_nodes == 2 for n in nodes):
                    break
                await asyncio.sleep(0.1)
            assert all(n.usable for n in nodes)
            results = await asyncio.gather(*(
                nodes[i % 2].admit("gateway", 1, 25, 0) for i in range(60)))
            assert sum(results) == 25
            # Five of the first node's calls end: exactly five places, whoever asks.
            taken = next(n for n in nodes if n.own.get(shares.counter_key("gateway", 1)))
            other = nodes[1] if taken is nodes[0] else nodes[0]
            for _ in range(5):
                taken.changed("gateway", 1, -1)
            await asyncio.sleep(0.2)
            again = await asyncio.gather(*(other.admit("gateway", 1, 25, 0)
                                           for _ in range(10)))
            return results, again
        finally:
            for node in nodes:
                await node.close()

    first, again = asyncio.run(run())
    assert sum(first) == 25
    assert sum(again) == 5


def test_without_redis_a_node_admits_its_share_then_writes_back(redis_server: RedisServer) -> None:
    async def run() -> None:
        node = SharedCounts(redis_server.url, "a", 0)
        peer = SharedCounts(redis_server.url, "b", 0)
        await node.start()
        await peer.start()
        try:
            for _ in range(40):
                if node.usable and node.stats.live_nodes == 2:
                    break
                await asyncio.sleep(0.1)
            assert node.usable and node.stats.live_nodes == 2
            assert await node.admit("gateway", 2, 10, 0)  # through Redis
            redis_server.kill()
            # Down: at most its share (10 // 2 live nodes) of this node's own count.
            for _ in range(40):
                if node.stats.state == "down":
                    break
                await asyncio.sleep(0.1)
            assert node.stats.state == "down"
            assert await node.admit("gateway", 2, 10, 4)
            assert not await node.admit("gateway", 2, 10, 5)
            assert node.stats.by_share == 2
            redis_server.start()  # back, and empty
            for _ in range(60):
                if node.stats.restarts_seen and node.stats.state == "up":
                    break
                await asyncio.sleep(0.1)
            assert node.stats.restarts_seen == 1 and node.stats.state == "up"
            client = redis.Redis.from_url(redis_server.url, decode_responses=True)
            assert client.hget(shares.counter_key("gateway", 2), "a/0") == "2"
        finally:
            await node.close()
            await peer.close()

    asyncio.run(run())


def test_a_node_reads_the_redis_password_from_a_file(pg_url: str, tmp_path: Path) -> None:
    """A Redis with a password: the node reads it from ``--redis-password-file``, so it
    is in no process's command line, and counts through Redis."""
    secure = RedisServer(tmp_path / "redis", password="s3cr3t-pw").start()
    secret = tmp_path / "redis.pw"
    secret.write_text("s3cr3t-pw\n")
    secret.chmod(0o600)
    (tmp_path / "n1").mkdir()
    node = Softswitch(tmp_path / "n1", db=pg_url, extra_args=[
        "--node", "n1", "--redis", f"redis://127.0.0.1:{secure.port}/0",
        "--redis-password-file", str(secret)])
    try:
        node.start()
        assert wait_until(lambda: node.api.get("/api/v1/health").get("redis") == "up",
                          timeout=10), node.api.get("/api/v1/health")
        assert node.proc is not None
        assert b"s3cr3t" not in Path(f"/proc/{node.proc.pid}/cmdline").read_bytes()
        with redis.Redis(port=secure.port, password="s3cr3t-pw") as client:
            assert client.exists(shares.liveness_key("n1"))
    finally:
        node.stop()
        secure.stop()


def test_counters_in_use_only_stay_in_redis(redis_server: RedisServer) -> None:
    """A field back at zero is deleted, a counter without fields leaves the index at the
    next fetch, and one that rises again is indexed and seen by the other node."""
    async def run() -> None:
        node = SharedCounts(redis_server.url, "a", 0)
        peer = SharedCounts(redis_server.url, "b", 0)
        await node.start()
        await peer.start()
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        key = shares.counter_key("vendor", 9)
        try:
            for _ in range(40):
                if node.usable and peer.usable:
                    break
                await asyncio.sleep(0.1)
            node.changed("vendor", 9, 1)
            await asyncio.sleep(0.6)  # written, indexed, fetched by the peer
            assert client.sismember("ss:counters", key)
            assert peer.other("vendor", 9) == 1
            node.changed("vendor", 9, -1)
            await asyncio.sleep(0.6)
            assert not client.exists(key)  # our field went, the hash with it
            assert not client.sismember("ss:counters", key)  # out of what is fetched
            assert peer.other("vendor", 9) == 0 and key not in node.own
            node.changed("vendor", 9, 2)
            await asyncio.sleep(0.6)
            assert client.sismember("ss:counters", key) and peer.other("vendor", 9) == 2
        finally:
            client.close()
            await node.close()
            await peer.close()

    asyncio.run(run())
