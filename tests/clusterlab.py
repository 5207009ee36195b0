"""Nodes sharing one PostgreSQL (and Redis, when given) behind the kamailio edge as
shipped (``deploy/kamailio/edge.cfg``), on loopback addresses: what the cluster tests
start (docs/cluster.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kamailio import DEPLOY, Kamailio
from sippctl import CUSTOMER_IP, VENDOR_IP
from support import Api, Softswitch, free_port, wait_until

EDGE_IP = "127.0.0.50"
NODE_IPS = ("127.0.0.61", "127.0.0.62", "127.0.0.63")


@dataclass
class Cluster:
    workdir: Path
    db: str
    size: int = 2
    redis: str = ""
    nodes: list[Softswitch] = field(default_factory=list)
    edge: Kamailio | None = None

    def start(self) -> Cluster:
        for n in range(self.size):
            folder = self.workdir / f"node{n}"
            folder.mkdir(parents=True, exist_ok=True)
            extra = ["--node", f"n{n + 1}", "--media-ports",
                     f"{40000 + 3000 * n}-{42999 + 3000 * n}"]
            if self.redis:
                extra += ["--redis", self.redis]
            self.nodes.append(Softswitch(folder, sip_host=NODE_IPS[n], db=self.db,
                                         extra_args=extra))
        for node in self.nodes:
            node.start()
        node_list = self.workdir / "nodes.list"
        node_list.write_text("".join(f"1 sip:{n.sip_host}:{n.sip_port} 0 0\n"
                                     for n in self.nodes))
        self.edge = Kamailio(self.workdir / "edge", EDGE_IP, free_port(EDGE_IP),
                             config_file=DEPLOY / "edge.cfg",
                             values={"NODES_LIST": str(node_list)})
        self.edge.start()
        return self

    def configure(self, vendor_port: int, capacity: int | None = None,
                  vendor_capacity: int | None = None,
                  spare_vendor_port: int | None = None) -> None:
        """The customer trunk (by IP, with ``capacity``), the vendor "out" (with
        ``vendor_capacity``) and, with ``spare_vendor_port``, a vendor "spare" tried after
        it, the edge settings, through the first node's API; every node has them when
        this returns."""
        assert self.edge is not None
        api = self.api
        api.post("/api/v1/mapping-gateways", {"name": "in", "ips": [CUSTOMER_IP],
                                              "capacity": capacity})
        api.post("/api/v1/routing-gateways", {"name": "out", "host": VENDOR_IP,
                                              "port": vendor_port, "priority": 1,
                                              "capacity": vendor_capacity})
        vendors = 1
        if spare_vendor_port is not None:
            api.post("/api/v1/routing-gateways", {"name": "spare", "host": VENDOR_IP,
                                                  "port": spare_vendor_port, "priority": 2})
            vendors = 2
        for name, value in (("SS_EDGE_ADDRESSES", EDGE_IP),
                            ("SS_OUTBOUND_PROXY", self.edge.address),
                            ("SS_REPLY_UNAUTHORIZED", "Off")):
            api.put(f"/api/v1/parameters/{name}", {"value": value})
        for node in self.nodes:
            assert wait_until(lambda node=node: node.api.get("/api/v1/engine")
                              ["routing_gateways"] == vendors, timeout=5)
        assert wait_until(lambda: set(self.dispatcher().values()) == {"AP"}, timeout=5), \
            self.edge.rpc("dispatcher.list")

    @property
    def api(self) -> Api:
        return self.nodes[0].api

    def dispatcher(self) -> dict[str, str]:
        """Each node's URI and its dispatcher flags (``AP`` active, ``IP`` inactive)."""
        assert self.edge is not None
        return dict(re.findall(r"URI:\s*(sip:\S+)\s+FLAGS:\s*(\w+)",
                               self.edge.rpc("dispatcher.list")))

    def cdrs(self) -> list[dict[str, Any]]:
        return list(self.api.get("/api/v1/cdrs?limit=500")["items"])

    def stop(self) -> None:
        if self.edge is not None:
            self.edge.stop()
        for node in self.nodes:
            node.stop()
