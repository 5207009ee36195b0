"""A customer's call rate is the switch's, not each process's (docs/carrier-controls.md):
offered twice its rate through two signalling workers, and through two cluster nodes
behind the edge sharing Redis, exactly the rate and its burst reach the vendor."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from clusterlab import Cluster
from redisserver import RedisServer
from sippctl import CUSTOMER_IP, VENDOR_IP, Sipp, sipp
from support import Softswitch, free_port
from test_carrier_controls import customer, gateways, settle, vendor_sipp

ROUTED = str(Path(__file__).parents[1] / "interop" / "sipp" /
             "uac_routed_call_or_refused.xml")
RATE, BURST, OFFERED, SECONDS = 10, 10, 20, 6


def offered_twice_the_rate(start: Callable[[], Sipp], vendor: Sipp) -> int:
    """Start the customer's offer, wait for it, and check what reached the vendor: the
    burst and the rate for as long as it lasted, no more."""
    try:
        started = time.monotonic()
        offer = start()
        assert offer.wait(60) == 0, offer.output()
        offered_for = time.monotonic() - started
        reached = settle(vendor)
    finally:
        vendor.stop()
    assert RATE * (SECONDS - 1) + BURST <= reached <= RATE * offered_for + BURST + 1, \
        (reached, offered_for)
    return reached


def test_two_signalling_workers_share_one_rate(tmp_path: Path) -> None:
    switch = Softswitch(tmp_path, extra_args=["--signalling-workers", "2"]).start()
    try:
        port = free_port(VENDOR_IP)
        gateways(switch, {"call_rate": RATE, "call_rate_burst": BURST},
                 {"name": "vendor", "port": port})
        offered_twice_the_rate(lambda: customer(
            tmp_path, switch, "uac_call_or_refused.xml", OFFERED * SECONDS, OFFERED),
            vendor_sipp(tmp_path, "vendor", port))
        # Both workers took calls: the dispatcher spreads them by Call-ID.
        dispatched = switch.api.get("/api/v1/engine")["signalling"]["dispatcher"]["dispatched"]
        assert len(dispatched) == 2 and min(dispatched) > 0, dispatched
    finally:
        assert switch.stop() == 0, switch.log()[-3000:]


def test_two_cluster_nodes_share_one_rate(pg_url: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    lab = Cluster(tmp_path, pg_url, redis=redis.url)
    try:
        lab.start()
        port = free_port(VENDOR_IP)
        lab.configure(port)
        (gw,) = lab.api.get("/api/v1/mapping-gateways")["items"]
        status, body, _ = lab.api.call("PATCH", f"/api/v1/mapping-gateways/{gw['id']}",
                                       {"call_rate": RATE, "call_rate_burst": BURST})
        assert status == 200, body
        time.sleep(1.5)  # every node's reload
        edge = lab.edge
        assert edge is not None
        (tmp_path / "customer").mkdir()
        reached = offered_twice_the_rate(lambda: sipp(
            ROUTED, tmp_path / "customer", CUSTOMER_IP, free_port(CUSTOMER_IP), edge.address,
            calls=OFFERED * SECONDS, rate=OFFERED, timeout_s=60),
            vendor_sipp(tmp_path, "vendor", port))
        refused = [int(n.api.get("/api/v1/stats?scope=node")["counters"]["rejected_rate"])
                   for n in lab.nodes]
        assert min(refused) > 0, refused  # both nodes refused some: the rate was shared
        assert sum(refused) == OFFERED * SECONDS - reached
    finally:
        lab.stop()
        redis.stop()
