"""Two softswitch nodes sharing one PostgreSQL behind the kamailio edge as shipped
(``deploy/kamailio/edge.cfg``, docs/cluster.md), with sipp as the customer trunk and
the vendor: calls spread over the nodes by Call-ID and reach the vendor from the edge;
each node judges the customer on the address the edge vouches for (the CDR names it); an
unknown source behind the edge hears nothing, whatever header it forges; a node killed
with SIGKILL is out of the dispatcher within 3 s and calls keep going through the other;
restarted, it is back in and takes calls again.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import rawsip
from kamailio import DEPLOY, Kamailio
from sippctl import CUSTOMER_IP, VENDOR_IP, Sipp, sipp
from support import Api, Softswitch, free_port, wait_until

from b2bua.calls.recovery import REASON

EDGE_IP = "127.0.0.50"
NODE_IPS = ("127.0.0.61", "127.0.0.62")
STRANGER_IP = "127.0.0.9"
# The customer keeps the route set of the 200 (the edge record-routes) for ACK and BYE.
ROUTED_CALL = str(Path(__file__).parents[1] / "interop" / "sipp" / "uac_routed_call.xml")
CALLS = 20
RATE = 10


def dispatcher_flags(edge: Kamailio) -> dict[str, str]:
    """Each node's URI and its dispatcher flags (``AP`` active, ``IP`` inactive)."""
    text = edge.rpc("dispatcher.list")
    found = re.findall(r"URI:\s*(sip:\S+)\s+FLAGS:\s*(\w+)", text)
    return dict(found)


def attempts(node: Softswitch) -> int:
    return int(node.api.get("/api/v1/stats")["attempts"])


def call_batch(workdir: Path, edge: Kamailio, label: str, hold_ms: int = 200) -> Sipp:
    (workdir / label).mkdir()
    return sipp(ROUTED_CALL, workdir / label, CUSTOMER_IP, free_port(CUSTOMER_IP),
                edge.address, calls=CALLS, rate=RATE, hold_ms=hold_ms, timeout_s=40)


def cdrs_of(api: Api) -> list[dict[str, Any]]:
    return list(api.get("/api/v1/cdrs?limit=500")["items"])


def test_two_nodes_behind_the_edge(pg_url: str, tmp_path: Path) -> None:
    nodes = []
    for n, ip in enumerate(NODE_IPS):
        (tmp_path / f"node{n}").mkdir()
        nodes.append(Softswitch(tmp_path / f"node{n}", sip_host=ip, db=pg_url,
                                extra_args=["--node", f"n{n + 1}", "--media-ports",
                                            f"{40000 + 5000 * n}-{44999 + 5000 * n}"]))
    nodes[0].start()
    nodes[1].start()
    edge_port = free_port(EDGE_IP)
    node_list = tmp_path / "nodes.list"
    node_list.write_text("".join(f"1 sip:{n.sip_host}:{n.sip_port} 0 0\n" for n in nodes))
    edge = Kamailio(tmp_path / "edge", EDGE_IP, edge_port,
                    config_file=DEPLOY / "edge.cfg",
                    values={"NODES_LIST": str(node_list)})
    vendor_port = free_port(VENDOR_IP)
    vendor: Sipp | None = None
    try:
        edge.start()
        api = nodes[0].api
        api.post("/api/v1/mapping-gateways", {"name": "in", "ips": [CUSTOMER_IP]})
        api.post("/api/v1/routing-gateways", {"name": "out", "host": VENDOR_IP,
                                              "port": vendor_port})
        for name, value in (("SS_EDGE_ADDRESSES", EDGE_IP),
                            ("SS_OUTBOUND_PROXY", edge.address),
                            ("SS_REPLY_UNAUTHORIZED", "Off")):
            api.put(f"/api/v1/parameters/{name}", {"value": value})
        for node in nodes:  # the second learns it all through the database
            assert wait_until(lambda node=node: node.api.get("/api/v1/engine")
                              ["routing_gateways"] == 1, timeout=5)
        assert wait_until(lambda: set(dispatcher_flags(edge).values()) == {"AP"}, timeout=5), \
            edge.rpc("dispatcher.list")
        (tmp_path / "vendor").mkdir()
        vendor = sipp("uas_answer.xml", tmp_path / "vendor", VENDOR_IP, vendor_port,
                      calls=4 * CALLS, timeout_s=120, extra=["-trace_msg"])

        # Calls through the edge: spread over both nodes, every one answered.
        batch = call_batch(tmp_path, edge, "first")
        assert batch.wait(60) == 0, batch.output()
        spread = [attempts(node) for node in nodes]
        assert sum(spread) == CALLS and min(spread) > 0, spread
        cdrs = wait_until(lambda: len(items := api.get("/api/v1/cdrs?limit=100")["items"])
                          == CALLS and items, timeout=10)
        assert cdrs, api.get("/api/v1/cdrs?limit=100")
        # Judged, and recorded, on the customer's address, not the edge's; named by node.
        assert {c["source"].split(":")[0] for c in cdrs} == {CUSTOMER_IP}
        assert {c["node"] for c in cdrs} == {"n1", "n2"}
        seen = {c["call_id_in"] for c in cdrs}
        # The vendor got every INVITE from the edge (its Via on top), not from a node.
        messages = "".join(p.read_text(errors="replace")
                           for p in (tmp_path / "vendor").rglob("*_messages.log"))
        vias = re.findall(r"^INVITE .*?\r?\nVia: SIP/2.0/UDP ([\d.]+):(\d+)", messages,
                          flags=re.M | re.S)
        assert vias and {host for host, _ in vias} == {EDGE_IP}, vias[:3]

        # An unknown source behind the edge hears nothing, with a forged header too.
        for method, forged in (("INVITE", ""), ("OPTIONS", ""),
                               ("INVITE", f"X-Softswitch-Source: udp:{CUSTOMER_IP}:5060")):
            data = rawsip.request(method, EDGE_IP, edge_port, STRANGER_IP, 0, extra=forged)
            replies, _ = rawsip.exchange(data, STRANGER_IP, (EDGE_IP, edge_port), wait=2.5)
            assert replies == [], (method, forged, replies)
        dropped = sum(int(n.api.get("/api/v1/stats")["counters"]["dropped_unknown"]) for n in nodes)
        assert dropped == 3

        # A node killed with calls up: out of the dispatcher within 3 s; the other node
        # takes it over and writes those calls' CDRs, marked interrupted, once.
        victim = nodes[1]
        assert victim.proc is not None
        long_calls = call_batch(tmp_path, edge, "up-at-kill", hold_ms=6000)
        assert wait_until(lambda: all(len(n.api.get("/api/v1/calls")["items"]) >= 2
                                      for n in nodes), timeout=10)
        on_victim = {c["call_id_in"] for c in victim.api.get("/api/v1/calls")["items"]}
        os.kill(victim.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.proc.wait(10)
        victim_uri = f"sip:{victim.sip_host}:{victim.sip_port}"
        assert wait_until(lambda: dispatcher_flags(edge).get(victim_uri, "").startswith("I"),
                          timeout=3.5, interval=0.1), edge.rpc("dispatcher.list")
        assert time.monotonic() - killed_at <= 3.5
        assert wait_until(lambda: on_victim <= {c["call_id_in"] for c in cdrs_of(api)},
                          timeout=8, interval=0.2), "the dead node's calls have no CDR"
        recovered = [c for c in cdrs_of(api) if c["call_id_in"] in on_victim]
        assert {(c["node"], c["termination_reason"]) for c in recovered} == {("n2", REASON)}
        long_calls.wait(60)  # the dead node's calls fail at the customer; the rest end
        # Every INVITE of the batch has exactly one CDR.
        batch_ids = [c["call_id_in"] for c in cdrs_of(api) if c["call_id_in"] not in seen]
        assert len(batch_ids) == len(set(batch_ids)) == CALLS
        seen.update(batch_ids)
        before = attempts(nodes[0])
        batch = call_batch(tmp_path, edge, "after-kill")
        assert batch.wait(60) == 0, batch.output()
        assert attempts(nodes[0]) - before == CALLS

        # Restarted, it is probed back in and takes calls again.
        victim.start()
        assert wait_until(lambda: dispatcher_flags(edge).get(victim_uri) == "AP",
                          timeout=5, interval=0.1), edge.rpc("dispatcher.list")
        batch = call_batch(tmp_path, edge, "after-restart")
        assert batch.wait(60) == 0, batch.output()
        assert attempts(victim) > 0
        assert wait_until(lambda: len(cdrs_of(api)) == 4 * CALLS, timeout=10)
        ids = [c["call_id_in"] for c in cdrs_of(api)]
        assert len(set(ids)) == len(ids)
    finally:
        if vendor is not None:
            vendor.stop()
        edge.stop()
        for node in nodes:
            node.stop()

