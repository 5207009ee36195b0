"""Two softswitch nodes sharing one PostgreSQL behind the kamailio edge as shipped
(``deploy/kamailio/edge.cfg``, docs/cluster.md), with sipp as the customer trunk and
the vendor: calls spread over the nodes by Call-ID and reach the vendor from the edge;
each node judges the customer on the address the edge vouches for (the CDR names it and
the node); an unknown source behind the edge hears nothing, whatever header it forges; a
node killed with SIGKILL while calls are up is out of the dispatcher within 3 s, the
other node writes its calls' CDRs marked interrupted, once, and calls keep going;
restarted, it is back in and takes calls again.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import rawsip
from clusterlab import Cluster
from kamailio import Kamailio
from sippctl import CUSTOMER_IP, VENDOR_IP, Sipp, sipp
from support import Softswitch, free_port, wait_until

from b2bua.calls.recovery import REASON

STRANGER_IP = "127.0.0.9"
# The customer keeps the route set of the 200 (the edge record-routes) for ACK and BYE.
ROUTED_CALL = str(Path(__file__).parents[1] / "interop" / "sipp" / "uac_routed_call.xml")
CALLS = 20
RATE = 10


def attempts(node: Softswitch) -> int:
    return int(node.api.get("/api/v1/stats?scope=node")["attempts"])


def call_batch(workdir: Path, edge: Kamailio, label: str, hold_ms: int = 200,
               calls: int = CALLS, rate: float = RATE) -> Sipp:
    (workdir / label).mkdir()
    return sipp(ROUTED_CALL, workdir / label, CUSTOMER_IP, free_port(CUSTOMER_IP),
                edge.address, calls=calls, rate=rate, hold_ms=hold_ms, timeout_s=40)


def test_two_nodes_behind_the_edge(pg_url: str, tmp_path: Path) -> None:
    lab = Cluster(tmp_path, pg_url)
    vendor_port = free_port(VENDOR_IP)
    vendor: Sipp | None = None
    try:
        lab.start()
        nodes, edge, api = lab.nodes, lab.edge, lab.api
        assert edge is not None
        lab.configure(vendor_port)
        (tmp_path / "vendor").mkdir()
        vendor = sipp("uas_answer.xml", tmp_path / "vendor", VENDOR_IP, vendor_port,
                      calls=4 * CALLS, timeout_s=120, extra=["-trace_msg"])

        # Calls through the edge: spread over both nodes, every one answered.
        batch = call_batch(tmp_path, edge, "first")
        assert batch.wait(60) == 0, batch.output()
        spread = [attempts(node) for node in nodes]
        assert sum(spread) == CALLS and min(spread) > 0, spread
        # Any node's API shows the cluster: the counters summed, each node's own beside.
        merged = nodes[1].api.get("/api/v1/stats")
        assert merged["attempts"] == CALLS and merged["unreachable"] == []
        assert {name: n["attempts"] for name, n in merged["nodes"].items()} == \
            {"n1": spread[0], "n2": spread[1]}
        # The relays too: ports summed, each node's view under its name.
        media = nodes[1].api.get("/api/v1/media")
        assert set(media["nodes"]) == {"n1", "n2"} and media["unreachable"] == []
        assert media["ports_free"] == sum(v["ports_free"] for v in media["nodes"].values())
        assert media["ports_free"] > nodes[1].api.get("/api/v1/media?scope=node")["ports_free"]
        # Each node's metrics carry its name, so one Prometheus keeps them apart.
        for name, node in zip(("n1", "n2"), nodes, strict=True):
            text = node.api.get("/api/v1/metrics")
            assert f'softswitch_engine_up{{node="{name}"}} 1' in text
            assert f'softswitch_call_attempts_total{{node="{name}"}} ' in text
            assert "softswitch_cluster_redis_up" not in text  # no Redis in this lab
        cdrs = wait_until(lambda: len(items := lab.cdrs()) == CALLS and items, timeout=10)
        assert cdrs, lab.cdrs()
        # Judged, and recorded, on the customer's address, not the edge's; named by node.
        assert {c["source"].split(":")[0] for c in cdrs} == {CUSTOMER_IP}
        assert {c["node"] for c in cdrs} == {"n1", "n2"}
        seen = {c["call_id_in"] for c in cdrs}
        # The vendor got every INVITE from the edge (its Via on top), not from a node.
        messages = "".join(p.read_text(errors="replace")
                           for p in (tmp_path / "vendor").rglob("*_messages.log"))
        vias = re.findall(r"^INVITE .*?\r?\nVia: SIP/2.0/UDP ([\d.]+):(\d+)", messages,
                          flags=re.M | re.S)
        assert vias and {host for host, _ in vias} == {edge.host}, vias[:3]

        # An unknown source behind the edge hears nothing, with a forged header too.
        for method, forged in (("INVITE", ""), ("OPTIONS", ""),
                               ("INVITE", f"X-Softswitch-Source: udp:{CUSTOMER_IP}:5060")):
            data = rawsip.request(method, edge.host, edge.port, STRANGER_IP, 0, extra=forged)
            replies, _ = rawsip.exchange(data, STRANGER_IP, (edge.host, edge.port), wait=2.5)
            assert replies == [], (method, forged, replies)
        dropped = sum(int(n.api.get("/api/v1/stats?scope=node")["counters"]["dropped_unknown"])
                      for n in nodes)
        assert dropped == 3

        # A node killed with calls up: out of the dispatcher within 3 s; the other node
        # takes it over and writes those calls' CDRs, marked interrupted, once.
        victim = nodes[1]
        assert victim.proc is not None
        long_calls = call_batch(tmp_path, edge, "up-at-kill", hold_ms=6000)
        assert wait_until(lambda: all(len(n.api.get("/api/v1/calls?scope=node")["items"]) >= 2
                                      for n in nodes), timeout=10)
        up_on_victim = victim.api.get("/api/v1/calls?scope=node")["items"]
        merged_calls = api.get("/api/v1/calls")["items"]  # n1's API, both nodes' calls
        assert {c["node"] for c in merged_calls} == {"n1", "n2"}
        assert {c["call_id_in"] for c in merged_calls if c["node"] == "n2"} >= \
            {c["call_id_in"] for c in up_on_victim}
        on_victim = {c["call_id_in"] for c in up_on_victim}
        answered_on_victim = sum(1 for c in up_on_victim if c["answer_at"] is not None)
        os.kill(victim.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.proc.wait(10)
        victim_uri = f"sip:{victim.sip_host}:{victim.sip_port}"
        assert wait_until(lambda: lab.dispatcher().get(victim_uri, "").startswith("I"),
                          timeout=3.5, interval=0.1), edge.rpc("dispatcher.list")
        assert time.monotonic() - killed_at <= 3.5
        assert wait_until(lambda: on_victim <= {c["call_id_in"] for c in lab.cdrs()},
                          timeout=8, interval=0.2), "the dead node's calls have no CDR"
        recovered = [c for c in lab.cdrs() if c["call_id_in"] in on_victim]
        assert {(c["node"], c["termination_reason"]) for c in recovered} == {("n2", REASON)}
        # Both legs of each answered call ended from n1 (through the edge): the vendor
        # and the customer each got a BYE saying why.
        def byes(folder: Path) -> int:
            """Distinct calls a "node lost" BYE was received for, in sipp's message log."""
            text = "".join(p.read_text(errors="replace")
                           for p in folder.rglob("*_messages.log"))
            calls = set()
            for block in text.split("message received")[1:]:
                body = block.split("\n", 1)[-1].lstrip()
                found = re.search(r"^Call-ID:\s*(\S+)", body, flags=re.M | re.I)
                if body.startswith("BYE ") and 'text="node lost"' in body and found:
                    calls.add(found.group(1))
            return len(calls)

        assert wait_until(lambda: byes(tmp_path / "vendor") >= answered_on_victim,
                          timeout=5), byes(tmp_path / "vendor")
        assert byes(tmp_path / "vendor") == answered_on_victim > 0
        view = api.get("/api/v1/cluster")
        assert {n["name"]: n["state"] for n in view["nodes"]} == {"n1": "self", "n2": "dead"}
        assert view["takeovers"] == 1
        long_calls.wait(60)  # the dead node's calls fail at the customer; the rest end
        # Every INVITE of the batch has exactly one CDR.
        batch_ids = [c["call_id_in"] for c in lab.cdrs() if c["call_id_in"] not in seen]
        assert len(batch_ids) == len(set(batch_ids)) == CALLS
        seen.update(batch_ids)
        before = attempts(nodes[0])
        batch = call_batch(tmp_path, edge, "after-kill")
        assert batch.wait(60) == 0, batch.output()
        assert attempts(nodes[0]) - before == CALLS

        # Restarted, it is probed back in and takes calls again.
        victim.start()
        assert wait_until(lambda: lab.dispatcher().get(victim_uri) == "AP",
                          timeout=5, interval=0.1), edge.rpc("dispatcher.list")
        assert wait_until(lambda: {n["name"]: n["state"] for n in
                                   api.get("/api/v1/cluster")["nodes"]}["n2"] == "alive",
                          timeout=5)
        batch = call_batch(tmp_path, edge, "after-restart")
        assert batch.wait(60) == 0, batch.output()
        assert attempts(victim) > 0
        assert wait_until(lambda: len(lab.cdrs()) == 4 * CALLS, timeout=10)
        ids = [c["call_id_in"] for c in lab.cdrs()]
        assert len(set(ids)) == len(ids)
    finally:
        if vendor is not None:
            vendor.stop()
        lab.stop()
