"""A node killed under load (docs/cluster.md, "When a node dies"): two nodes behind the
edge sharing PostgreSQL and Redis, sipp offering 30 calls/s through the edge to a trunk
with a capacity; one node gets SIGKILL. No call started 5 s after the kill fails; every
INVITE sipp sent has exactly one CDR in the end (the dead node's marked interrupted); no
count is left above 0 when the load stops (the dead node's places stop counting); the
restarted node takes calls again."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from clusterlab import Cluster
from redisserver import RedisServer
from sippctl import CUSTOMER_IP, VENDOR_IP, Sipp, sipp
from support import free_port, wait_until

from b2bua.calls.recovery import REASON

ROUTED_CALL = str(Path(__file__).parents[1] / "interop" / "sipp" / "uac_routed_call.xml")
RATE = 30
CALLS = 450  # 15 s of load
KILL_AT = 4.0  # seconds into the load
GRACE = 5.0  # calls started this long after the kill must not fail


def failed_call_numbers(run: Sipp) -> set[int]:
    """sipp's failed calls, by call number (its Call-IDs are NUMBER-PID@IP)."""
    text = "".join(p.read_text(errors="replace") for p in run.workdir.glob("errors.log"))
    return {int(n) for n in re.findall(r"Call-I[Dd] '(\d+)-", text)}


def test_a_node_killed_at_30_calls_per_second(pg_url: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    lab = Cluster(tmp_path, pg_url, redis=redis.url)
    vendor: Sipp | None = None
    try:
        lab.start()
        assert lab.edge is not None
        vendor_port = free_port(VENDOR_IP)
        lab.configure(vendor_port, capacity=500)  # counted through Redis, never reached
        (tmp_path / "vendor").mkdir()
        vendor = sipp("uas_answer.xml", tmp_path / "vendor", VENDOR_IP, vendor_port,
                      calls=10 * CALLS, timeout_s=180)
        (tmp_path / "load").mkdir()
        load = sipp(ROUTED_CALL, tmp_path / "load", CUSTOMER_IP, free_port(CUSTOMER_IP),
                    lab.edge.address, calls=CALLS, rate=RATE, hold_ms=1500, timeout_s=90)
        started = time.monotonic()
        victim = lab.nodes[1]
        assert victim.proc is not None
        time.sleep(KILL_AT)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        load.wait(120)

        # No call started GRACE seconds after the kill failed.
        late = int((KILL_AT + GRACE) * RATE)
        failed = failed_call_numbers(load)
        assert not {n for n in failed if n > late}, sorted(failed)
        # Every INVITE has exactly one CDR: a call the dead node had answered anything
        # to was noted first (its CDR written by the node taking over, marked), one it
        # had not is retried by the edge on the other node (docs/cluster.md).
        time.sleep(6)  # the takeover: 3 s of grace and a sweep
        cdrs = lab.cdrs()
        ids = [c["call_id_in"] for c in cdrs]
        assert len(ids) == len(set(ids))
        numbers = {int(i.split("-", 1)[0]) for i in ids}
        assert set(range(1, CALLS + 1)) - numbers == set()
        interrupted = [c for c in cdrs if c["termination_reason"] == REASON]
        assert interrupted and {c["node"] for c in interrupted} == {"n2"}
        # Nothing left counted: the dead node's places are gone with its liveness.
        status = lab.api.get("/api/v1/mapping-gateways/status")["items"]
        assert wait_until(lambda: sum(g["current_calls"] for g in lab.api.get(
            "/api/v1/mapping-gateways/status")["items"]) == 0, timeout=6), status

        # Restarted, it takes calls again.
        victim.start()
        uri = f"sip:{victim.sip_host}:{victim.sip_port}"
        assert wait_until(lambda: lab.dispatcher().get(uri) == "AP", timeout=5)
        (tmp_path / "again").mkdir()
        again = sipp(ROUTED_CALL, tmp_path / "again", CUSTOMER_IP, free_port(CUSTOMER_IP),
                     lab.edge.address, calls=40, rate=20, hold_ms=200, timeout_s=60)
        assert again.wait(60) == 0, again.output()
        assert int(victim.api.get("/api/v1/stats?scope=node")["attempts"]) > 0
        assert time.monotonic() - started < 120
    finally:
        if vendor is not None:
            vendor.stop()
        lab.stop()
        redis.stop()
