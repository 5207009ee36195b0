"""A customer trunk's capacity shared by two nodes through Redis (docs/cluster.md): a
mapping gateway of capacity 40 offered 60 calls at once through the edge, spread over
both nodes by Call-ID, gets exactly 40 up at the vendor and 20 refused; with Redis
killed under load each node admits at most its share; Redis restarted empty, the
counters are rebuilt within seconds and capacity is exact again."""

from __future__ import annotations

from pathlib import Path

from clusterlab import Cluster
from redisserver import RedisServer
from sippctl import CUSTOMER_IP, VENDOR_IP, Sipp, sipp
from support import Softswitch, free_port, wait_until

ROUTED_CALL = str(Path(__file__).parents[1] / "interop" / "sipp" / "uac_routed_call.xml")
CAPACITY = 40
OFFERED = 60


def gateway_calls(node: Softswitch) -> int:
    """The trunk's calls up as this node reports them: the cluster's (its own count and
    the other live nodes', read from Redis)."""
    status = node.api.get("/api/v1/mapping-gateways/status")
    return sum(int(g["current_calls"]) for g in status["items"])


def node_calls(node: Softswitch) -> int:
    """Calls up on this node itself."""
    return len(node.api.get("/api/v1/calls?scope=node")["items"])


def up(lab: Cluster) -> int:
    return sum(node_calls(n) for n in lab.nodes)


def offer(tmp_path: Path, lab: Cluster, label: str, calls: int, hold_ms: int) -> Sipp:
    assert lab.edge is not None
    (tmp_path / label).mkdir()
    return sipp(ROUTED_CALL, tmp_path / label, CUSTOMER_IP, free_port(CUSTOMER_IP),
                lab.edge.address, calls=calls, rate=60, hold_ms=hold_ms, timeout_s=60)


def test_capacity_is_the_clusters(pg_url: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    lab = Cluster(tmp_path, pg_url, redis=redis.url)
    vendor: Sipp | None = None
    try:
        lab.start()
        vendor_port = free_port(VENDOR_IP)
        lab.configure(vendor_port, capacity=CAPACITY)
        assert wait_until(lambda: all(n.api.get("/api/v1/health").get("redis") == "up"
                                      and n.api.get("/api/v1/cluster")["redis_live_nodes"]
                                      == 2 for n in lab.nodes), timeout=10)
        (tmp_path / "vendor").mkdir()
        vendor = sipp("uas_answer.xml", tmp_path / "vendor", VENDOR_IP, vendor_port,
                      calls=1000, timeout_s=180)

        # 60 calls in one second, each held 8 s: all overlap; exactly 40 are let in.
        first = offer(tmp_path, lab, "first", OFFERED, 8000)
        assert wait_until(lambda: up(lab) == CAPACITY, timeout=10)
        spread = [node_calls(n) for n in lab.nodes]
        assert min(spread) > 0, spread  # both nodes took calls: the capacity was shared
        # Each node's view of the trunk is the cluster's.
        assert wait_until(lambda: all(gateway_calls(n) == CAPACITY for n in lab.nodes),
                          timeout=3)
        refused = sum(int(n.api.get("/api/v1/stats?scope=node")["counters"]["rejected_capacity"])
                      for n in lab.nodes)
        assert wait_until(lambda: sum(
            int(n.api.get("/api/v1/stats?scope=node")["counters"]["rejected_capacity"])
            for n in lab.nodes) == OFFERED - CAPACITY, timeout=5), refused
        first.wait(60)
        assert wait_until(lambda: up(lab) == 0, timeout=10)
        answered = [c for c in lab.cdrs() if c["final_code"] == 200]
        assert len(answered) == CAPACITY
        assert len(lab.cdrs()) == CAPACITY  # refusals at capacity have no CDR

        # Redis gone under load: each node admits at most its share (40 // 2).
        metrics = lab.nodes[1].api.get("/api/v1/metrics")
        assert 'softswitch_cluster_redis_up{node="n2"} 1' in metrics
        assert 'softswitch_cluster_redis_live_nodes{node="n2"} 2' in metrics
        redis.kill()
        assert wait_until(lambda: all(n.api.get("/api/v1/health").get("redis") == "down"
                                      for n in lab.nodes), timeout=5)
        assert 'softswitch_cluster_redis_up{node="n1"} 0' in lab.api.get("/api/v1/metrics")
        second = offer(tmp_path, lab, "redis-down", OFFERED, 6000)
        assert wait_until(lambda: up(lab) >= CAPACITY - 4, timeout=10)
        assert all(node_calls(n) <= CAPACITY // 2 for n in lab.nodes)
        second.wait(60)
        assert wait_until(lambda: up(lab) == 0, timeout=10)

        # Back, empty: rebuilt from every node's own counts, exact again.
        redis.start()
        assert wait_until(lambda: all(n.api.get("/api/v1/health").get("redis") == "up"
                                      for n in lab.nodes), timeout=10)
        third = offer(tmp_path, lab, "redis-back", OFFERED, 6000)
        assert wait_until(lambda: up(lab) == CAPACITY, timeout=10)
        assert wait_until(lambda: all(n.api.get("/api/v1/stats?scope=node")["counters"][
            "rejected_capacity"] for n in lab.nodes), timeout=5)
        third.wait(60)
        assert wait_until(lambda: up(lab) == 0, timeout=10)
    finally:
        if vendor is not None:
            vendor.stop()
        lab.stop()
        redis.stop()


VENDOR_CAPACITY = 20


def test_a_vendors_capacity_is_the_clusters(pg_url: str, tmp_path: Path) -> None:
    """A vendor of capacity 20 offered 60 overlapping calls through two nodes: exactly 20
    reach it, the other 40 go on to the next vendor; afterwards it takes 20 again."""
    redis = RedisServer(tmp_path / "redis").start()
    lab = Cluster(tmp_path, pg_url, redis=redis.url)
    vendors: list[Sipp] = []
    try:
        lab.start()
        out_port, spare_port = free_port(VENDOR_IP), free_port(VENDOR_IP)
        lab.configure(out_port, vendor_capacity=VENDOR_CAPACITY, spare_vendor_port=spare_port)
        assert wait_until(lambda: all(n.api.get("/api/v1/cluster")["redis_live_nodes"] == 2
                                      for n in lab.nodes), timeout=10)
        for label, port in (("out", out_port), ("spare", spare_port)):
            (tmp_path / label).mkdir()
            vendors.append(sipp("uas_answer.xml", tmp_path / label, VENDOR_IP, port,
                                calls=1000, timeout_s=180))
        for round_no in (1, 2):
            # 60 calls in a second, each held 6 s: all overlap at the vendors.
            load = offer(tmp_path, lab, f"round{round_no}", OFFERED, 6000)
            assert wait_until(lambda: up(lab) == OFFERED, timeout=10), up(lab)
            spread = [node_calls(n) for n in lab.nodes]
            assert min(spread) > 0, spread  # both nodes sent calls to the vendor
            load.wait(60)
            assert wait_until(lambda: up(lab) == 0, timeout=10), (up(lab), load.output())
            answered = [c for c in lab.cdrs() if c["final_code"] == 200]
            assert len(answered) == OFFERED * round_no
            by_vendor = [c["routing_gateway"] for c in answered[-OFFERED:]]
            assert by_vendor.count("out") == VENDOR_CAPACITY, by_vendor
            assert by_vendor.count("spare") == OFFERED - VENDOR_CAPACITY
        # Nothing left counted anywhere: both nodes see the vendor empty.
        def counted(node: Softswitch) -> dict[str, int]:
            status = node.api.get("/api/v1/routing-gateways/status")["items"]
            return {g["name"]: g["current_calls"] for g in status}

        for node in lab.nodes:
            assert wait_until(lambda node=node: counted(node) == {"out": 0, "spare": 0},
                              timeout=3), counted(node)
    finally:
        for vendor in vendors:
            vendor.stop()
        lab.stop()
        redis.stop()
