"""Two softswitches sharing one PostgreSQL, both carrying calls, while a billing client
pages the CDRs through one of their APIs with the id cursor as the calls end: every
call of either engine has exactly one CDR, and the client sees each CDR once, none
skipped (the engines' writers commit ids in increasing order across processes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Api, Softswitch, free_port, wait_until

RATE = 25  # calls/s per engine
SECONDS = 20
PER_ENGINE = RATE * SECONDS
PAGE = 37  # an odd size: pages end mid-batch of either writer


def _pager(api: Api, stop: threading.Event, seen: list[int]) -> None:
    after = 0
    deadline = time.monotonic() + SECONDS + 90  # bounded whatever happens
    while time.monotonic() < deadline:
        page = api.get(f"/api/v1/cdrs?after_id={after}&limit={PAGE}")
        seen.extend(int(c["id"]) for c in page["items"])
        if page["items"]:
            after = int(page["items"][-1]["id"])
        if page["next_after_id"] is None:
            if stop.is_set():
                return  # the last page after both writers were drained
            time.sleep(0.05)


def test_two_engines_write_cdrs_a_paging_client_sees_each_once(pg_url: str,
                                                                tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Softswitch(tmp_path / "a", db=pg_url).start()
    # The second engine: the same database (already migrated), its own relay ports.
    second = Softswitch(tmp_path / "b", db=pg_url,
                        extra_args=["--media-ports", "30000-34999"]).start()
    try:
        api = first.api
        vendor_port = free_port(VENDOR_IP)
        api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
        api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                              "port": vendor_port})
        for switch in (first, second):  # the second learns it through the database
            assert wait_until(lambda s=switch: s.api.get("/api/v1/engine")
                              ["routing_gateways"] == 1, timeout=5)
        uas = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port,
                   calls=2 * PER_ENGINE, timeout_s=SECONDS + 40)
        uacs = [sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                     f"127.0.0.1:{switch.sip_port}", calls=PER_ENGINE, rate=RATE,
                     hold_ms=200, timeout_s=SECONDS + 30) for switch in (first, second)]
        stop = threading.Event()
        seen: list[int] = []
        client = threading.Thread(target=_pager, args=(second.api, stop, seen))
        client.start()
        try:
            for uac in uacs:
                assert uac.wait(SECONDS + 40) == 0
            assert uas.wait(30) == 0
            for switch in (first, second):
                assert wait_until(lambda s=switch: s.api.get("/api/v1/engine")
                                  ["db_writer"]["pending"] == 0, timeout=30)
        finally:
            stop.set()
            for proc in (*uacs, uas):
                proc.stop()
            client.join(SECONDS + 100)
        assert not client.is_alive()
        with first.database() as database:
            stored = database.rows("SELECT id, call_id_in FROM cdrs ORDER BY id")
        assert len(stored) == 2 * PER_ENGINE
        assert len({r["call_id_in"] for r in stored}) == 2 * PER_ENGINE
        assert len(seen) == len(set(seen)), "the cursor returned a CDR twice"
        assert seen == [int(r["id"]) for r in stored], "the cursor skipped a CDR"
        # Both engines wrote: each CDR names the engine's own outgoing Call-IDs.
        for switch in (first, second):
            assert switch.api.get("/api/v1/engine")["db_writer"]["written"] > PER_ENGINE
    finally:
        assert second.stop() == 0, second.log()[-3000:]
        assert first.stop() == 0, first.log()[-3000:]
