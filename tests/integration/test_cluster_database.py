"""A cluster node while its PostgreSQL restarts (docs/cluster.md): calls go on (the
configuration is in memory, the writes wait in the writer), the API answers 503 saying
why, and once the database is back the node takes its life lock and its jobs back, ``GET
/cluster`` tells of the outage, and the CDRs of the calls made meanwhile are written."""

from __future__ import annotations

from pathlib import Path

import pgserver
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until


def test_a_node_through_a_database_restart(private_pg: pgserver.PgServer,
                                           tmp_path: Path) -> None:
    url = pgserver.create_database(private_pg.admin_url)
    (tmp_path / "n1").mkdir()
    node = Softswitch(tmp_path / "n1", db=url, extra_args=["--node", "n1"])
    vendor = None
    try:
        node.start()
        api = node.api
        vendor_port = free_port(VENDOR_IP)
        api.post("/api/v1/mapping-gateways", {"name": "in", "ips": [CUSTOMER_IP]})
        api.post("/api/v1/routing-gateways", {"name": "out", "host": VENDOR_IP,
                                              "port": vendor_port})
        assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1,
                          timeout=5)
        assert wait_until(lambda: sorted(api.get("/api/v1/cluster")["jobs"]) ==
                          ["keepalive", "stats", "upstream"], timeout=5)
        view = api.get("/api/v1/cluster")
        assert view["database"]["state"] == "up" and view["database"]["life_lost"] == 0
        (tmp_path / "vendor").mkdir()
        vendor = sipp("uas_answer.xml", tmp_path / "vendor", VENDOR_IP, vendor_port,
                      calls=20, timeout_s=90)

        private_pg.stop()
        # The API checks tokens in the database: it says why it cannot answer.
        status, body, _ = api.call("GET", "/api/v1/cluster")
        assert status == 503 and "database" in body["detail"], body
        # Calls go on without the database: each waits for its note at most briefly.
        (tmp_path / "during").mkdir()
        during = sipp("uac_call.xml", tmp_path / "during", CUSTOMER_IP,
                      free_port(CUSTOMER_IP), f"{node.sip_host}:{node.sip_port}",
                      calls=5, rate=5, hold_ms=200, timeout_s=30)
        assert during.wait(40) == 0, during.output()

        private_pg.start()
        assert wait_until(lambda: api.get("/api/v1/cluster")["database"]["state"] == "up",
                          timeout=10)
        database = api.get("/api/v1/cluster")["database"]
        assert database["life_lost"] == 1, database  # its lock was dropped, taken back
        assert database["errors"] >= 1 and database["last_error"], database
        assert database["jobs_handed_over"] == 0
        assert sorted(api.get("/api/v1/cluster")["jobs"]) == ["keepalive", "stats", "upstream"]
        # The calls made meanwhile have their CDRs once the writer catches up.
        assert wait_until(lambda: len([c for c in api.get("/api/v1/cdrs")["items"]
                                       if c["final_code"] == 200]) == 5, timeout=15)
    finally:
        if vendor is not None:
            vendor.stop()
        node.stop()
