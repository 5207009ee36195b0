"""A real ``softswitch run``: start-up, API, live parameters, graceful stop."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import REPO, Api, Softswitch, free_port, wait_until

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
    assert (status, body) == (200, {"status": "ok", "engine": "up", "database": "up"})


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


def test_api_keeps_one_postgresql_connection_per_thread(tmp_path: Path, pg_url: str) -> None:
    """The API's threads keep a connection each across requests: however many requests,
    at most one session per thread (2 workers of 4) besides the engine's, none left by
    an export."""
    switch = Softswitch(tmp_path, db=pg_url).start()
    try:
        api = switch.api
        with switch.database() as database:
            def sessions() -> int:
                return int(database.value(
                    "SELECT COUNT(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"))

            def burst() -> None:
                paths = ["/api/v1/phones", "/api/v1/parameters", "/api/v1/cdrs",
                         "/api/v1/cdrs.csv", "/api/v1/audit"] * 8
                with ThreadPoolExecutor(8) as pool:
                    statuses = list(pool.map(lambda p: api.call("GET", p)[0], paths))
                assert statuses == [200] * len(paths)

            time.sleep(0.5)  # the engine's own connections are all open
            engine = sessions()
            for _ in range(3):
                burst()
                # An export's own connection ends with its response.
                assert wait_until(lambda: sessions() <= engine + 8, timeout=3), sessions()
            assert sessions() > engine  # kept for the threads' next requests
    finally:
        assert switch.stop() == 0


def test_unreachable_database_server_is_a_one_line_error(tmp_path: Path) -> None:
    url = f"postgresql://softswitch:secret-pw@127.0.0.1:{free_port()}/softswitch"
    done = subprocess.run([sys.executable, "-m", "b2bua.cli", "run", "--db", url],
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("softswitch: database: connection failed")
    assert "Traceback" not in done.stderr and "secret-pw" not in done.stderr


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
