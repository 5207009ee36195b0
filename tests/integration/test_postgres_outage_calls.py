"""PostgreSQL stopped for 30 s and started again while 20 calls/s run for 45 s: the calls
go on, the API says the database is down (health) and refuses writes with 503, and
afterwards every call has exactly one CDR, which the id cursor pages exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pgserver
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Api, Softswitch, free_port, wait_until

RATE = 20
SECONDS = 45
CALLS = RATE * SECONDS
DOWN_AT, UP_AT = 5.0, 35.0  # seconds into the load


def _page_all(api: Api) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []
    after = 0
    for _ in range(CALLS):  # bounded: at least one CDR per page until the end
        page = api.get(f"/api/v1/cdrs?after_id={after}&limit=97")
        seen.extend(page["items"])
        if page["next_after_id"] is None:
            return seen
        after = int(page["next_after_id"])
    raise AssertionError("the cursor did not reach the end")


def test_calls_survive_a_database_outage_and_every_cdr_lands_once(
        private_pg: pgserver.PgServer, tmp_path: Path) -> None:
    url = pgserver.create_database(private_pg.admin_url)
    switch = Softswitch(tmp_path, extra_args=["--db", url]).start()
    try:
        api = switch.api
        vendor_port = free_port(VENDOR_IP)
        api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
        api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                              "port": vendor_port})
        assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1,
                          timeout=3)
        uas = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port, calls=CALLS,
                   timeout_s=SECONDS + 40)
        uac = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                   f"127.0.0.1:{switch.sip_port}", calls=CALLS, rate=RATE, hold_ms=500,
                   timeout_s=SECONDS + 30)
        try:
            started = time.monotonic()
            time.sleep(DOWN_AT)
            private_pg.stop()
            health = Api(switch.api_base, "").call("GET", "/api/v1/health", token=None)
            assert health[0] == 200 and health[1]["database"] == "down"
            refused = api.call("POST", "/api/v1/number-groups", {"name": "during"})
            assert refused[0] == 503, refused
            time.sleep(max(0.0, UP_AT - (time.monotonic() - started)))
            private_pg.start()
            assert uac.wait(SECONDS + 40) == 0, "calls failed during the outage"
            assert uas.wait(30) == 0
        finally:
            uac.stop()
            uas.stop()
        assert wait_until(
            lambda: api.get("/api/v1/engine")["db_writer"]["pending"] == 0, timeout=30)
        health = Api(switch.api_base, "").call("GET", "/api/v1/health", token=None)
        assert health[1]["database"] == "up"
        cdrs = _page_all(api)
        ids = [int(str(c["id"])) for c in cdrs]
        assert ids == sorted(set(ids)), "the cursor returned a CDR twice or out of order"
        calls = [c["call_id_in"] for c in cdrs]
        assert len(calls) == len(set(calls)) == CALLS, (len(calls), len(set(calls)))
        assert all(c["final_code"] == 200 for c in cdrs)
        assert len({c["cdr_uuid"] for c in cdrs}) == CALLS
    finally:
        assert switch.stop() == 0, switch.log()[-3000:]
