"""A PostgreSQL private_pg that stops answering without closing its connections (hung, or cut
off by the network with no reset) does not stall the engine: its event loop never waits
on the database, so signalling and the control channel go on; once the private_pg answers
again, changed config is live again."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pgserver
from support import Softswitch, wait_until

from b2bua import control
from b2bua.storage import postgres

HUNG_S = postgres.SLOW_POLL + 2.0  # past a slow tick: the watcher reads the database then


def server_processes(postmaster: int) -> list[int]:
    """The private_pg and its backends (each backend is a session of its own)."""
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return [postmaster, *(int(child) for child in children)]


def test_a_hung_database_server_does_not_stall_the_engine(private_pg: pgserver.PgServer,
                                                          tmp_path: Path) -> None:
    url = pgserver.create_database(private_pg.admin_url)
    switch = Softswitch(tmp_path, db=url).start()
    try:
        api = switch.api
        api.put("/api/v1/parameters/SS_SIP_TIMEOUT_INVITE", {"value": 3})
        assert wait_until(
            lambda: api.get("/api/v1/engine")["params"]["SS_SIP_TIMEOUT_INVITE"] == 3)
        socket_path = switch.workdir / "var" / "engine.sock"
        assert private_pg.proc is not None
        frozen = server_processes(private_pg.proc.pid)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            slowest = 0.0
            deadline = time.monotonic() + HUNG_S
            while time.monotonic() < deadline:
                asked = time.monotonic()
                control.request(socket_path, "status", timeout=1.0)
                slowest = max(slowest, time.monotonic() - asked)
                time.sleep(0.1)
            assert slowest < 0.5, f"the engine answered after {slowest:.1f} s"
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        api.put("/api/v1/parameters/SS_SIP_TIMEOUT_INVITE", {"value": 4})
        assert wait_until(
            lambda: api.get("/api/v1/engine")["params"]["SS_SIP_TIMEOUT_INVITE"] == 4,
            timeout=2)
    finally:
        assert switch.stop() == 0, switch.log()[-3000:]
