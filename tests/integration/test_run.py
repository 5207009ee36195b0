"""A real ``softswitch run``: start-up, API, live parameters, graceful stop."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO, Api, Softswitch, wait_until

from b2bua.storage import migrate

BOTH = pytest.mark.both_backends


@BOTH
def test_first_start_creates_database_and_admin_token(softswitch: Softswitch) -> None:
    token_file = softswitch.workdir / "var" / "admin-token"
    if softswitch.db is None:
        assert softswitch.db_path.exists()
    with softswitch.database() as database:
        assert migrate.current_version(database) == migrate.latest_version()
        assert database.value("SELECT COUNT(*) FROM api_tokens WHERE revoked = 0") == 1
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "admin API token written to" in softswitch.log()
    status, body, _ = softswitch.api.call("GET", "/api/v1/health", token=None)
    assert (status, body) == (200, {"status": "ok", "engine": "up"})


@BOTH
def test_parameter_change_reaches_the_engine_within_a_second(softswitch: Softswitch) -> None:
    api = softswitch.api
    assert api.get("/api/v1/engine")["params"]["SS_SIP_TIMEOUT_INVITE"] == 10
    started = time.monotonic()
    api.put("/api/v1/parameters/SS_SIP_TIMEOUT_INVITE", {"value": 3})
    seen = wait_until(
        lambda: api.get("/api/v1/engine")["params"]["SS_SIP_TIMEOUT_INVITE"] == 3, timeout=1.0
    )
    elapsed = time.monotonic() - started
    assert seen, "the engine did not see the change within 1 s"
    assert elapsed < 1.0
    assert "parameter SS_SIP_TIMEOUT_INVITE=3" in softswitch.log()


@BOTH
def test_refused_value_leaves_engine_and_store_unchanged(softswitch: Softswitch) -> None:
    api = softswitch.api
    status, body, headers = api.call("PUT", "/api/v1/parameters/SS_SIP_TIMEOUT_RINGING",
                                     {"value": 0})
    assert status == 422 and headers["Content-Type"] == "application/problem+json"
    assert body["errors"]["value"] == ["must be at least 1 s"]
    time.sleep(0.5)
    assert api.get("/api/v1/engine")["params"]["SS_SIP_TIMEOUT_RINGING"] == 120
    assert api.get("/api/v1/parameters/SS_SIP_TIMEOUT_RINGING")["value"] == 120


@BOTH
def test_restart_keeps_token_and_parameters(tmp_path: Path, backend_db: str | None) -> None:
    first = Softswitch(tmp_path, db=backend_db).start()
    first.api.put("/api/v1/parameters/SS_SIP_TIMEOUT_TRYING", {"value": 7})
    token = first.api.token
    assert first.stop() == 0
    second = Softswitch(tmp_path, db=backend_db).start()
    try:
        assert second.api.token == token
        assert second.api.get("/api/v1/engine")["params"]["SS_SIP_TIMEOUT_TRYING"] == 7
        assert "admin API token in" in second.log()
    finally:
        assert second.stop(signal.SIGINT) == 0
    assert "softswitch: stopped" in second.log()
    assert not (tmp_path / "var" / "engine.sock").exists()


@BOTH
def test_newer_database_refuses_to_start(tmp_path: Path, backend_db: str | None) -> None:
    switch = Softswitch(tmp_path, db=backend_db).start()
    switch.stop()
    with switch.database() as database:
        database.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                         "VALUES (777, 'future', 0)")
    refused = Softswitch(tmp_path, db=backend_db)
    with pytest.raises(RuntimeError, match="newer than this softswitch"):
        refused.start(timeout=10)
    assert refused.proc is not None and refused.proc.returncode == 3


def test_defaults_serve_api_on_8088_with_database_under_var(tmp_path: Path) -> None:
    """``softswitch run`` with no options: var/softswitch.db, API on 127.0.0.1:8088."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "b2bua.cli", "run"], cwd=tmp_path,
                            stdout=log, stderr=log, env=env)
    try:
        api = Api("http://127.0.0.1:8088", "")
        up = wait_until(lambda: _health(api), timeout=20)
        assert up, (tmp_path / "run.log").read_text()
        assert (tmp_path / "var" / "softswitch.db").exists()
        assert (tmp_path / "var" / "admin-token").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _health(api: Api) -> bool:
    try:
        status, body, _ = api.call("GET", "/api/v1/health", token=None)
    except OSError:
        return False
    return status == 200 and body.get("engine") == "up"
