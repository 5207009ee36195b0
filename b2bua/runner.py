"""``softswitch run``: the engine (asyncio + uvloop) and the API (gunicorn) together."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import uvloop

from b2bua.cluster.life import NodeNameTaken
from b2bua.engine import Engine
from b2bua.lifeline import die_with_parent
from b2bua.options import EngineOptions, HostPort
from b2bua.storage import migrate, open_database, tokens

log = logging.getLogger("b2bua.run")

API_START_TIMEOUT = 15.0
API_THREADS = 4  # per API process; also the size of its PostgreSQL pool
API_THREADS_ENV = "SOFTSWITCH_API_THREADS"  # read by api/context.py
API_STOP_TIMEOUT = 10.0


def _shown(database: Path | str) -> str:
    """The database as printed: a server's URL without its password."""
    if isinstance(database, Path):
        return str(database)
    scheme, sep, rest = database.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return database
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def prepare_database(target: Path | str) -> None:
    """Create and migrate the database; refuses one newer than this code."""
    with open_database(target) as database:
        applied = migrate.migrate(database)
    if applied:
        log.info("database %s migrated to version %d", _shown(target), max(applied))


def ensure_admin_token(target: Path | str, var_dir: Path) -> tuple[Path, bool]:
    """Write a working admin token to ``admin-token`` in ``var_dir`` (mode 600).

    An existing file whose token still verifies is kept, so restarts do not
    invalidate operators' scripts. Returns the path and whether a token was created.
    """
    token_file = var_dir / "admin-token"
    with open_database(target) as conn:
        if token_file.exists():
            existing = token_file.read_text().strip()
            if existing and tokens.verify_token(conn, existing) is not None:
                return token_file, False
        token = tokens.create_token(conn, "admin", "admin")
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.chmod(token_file, 0o600)
    return token_file, True


def start_api(options: EngineOptions, api_listen: HostPort) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    database = options.database
    env["SOFTSWITCH_DB"] = str(database.resolve()) if isinstance(database, Path) else database
    env["SOFTSWITCH_CONTROL"] = str(options.control_path.resolve())
    env[API_THREADS_ENV] = str(API_THREADS)
    cmd = [
        sys.executable, "-m", "gunicorn",
        "--bind", str(api_listen),
        "--workers", "2",
        "--threads", str(API_THREADS),
        "--worker-class", "gthread",
        "--graceful-timeout", "5",
        "--log-level", "warning",
        "api.wsgi:app",
    ]
    # The API gets SIGTERM when the engine dies, even by ``kill -9``, so a restarted
    # softswitch never finds its API port held by an orphan.
    engine = os.getpid()
    return subprocess.Popen(cmd, env=env, preexec_fn=lambda: die_with_parent(engine))


def wait_for_api(proc: subprocess.Popen[bytes], api_listen: HostPort) -> None:
    host = "127.0.0.1" if api_listen.host in ("0.0.0.0", "::") else api_listen.host
    url = f"http://{HostPort(host, api_listen.port)}/api/v1/health"
    deadline = time.monotonic() + API_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"API did not answer on {url} within {API_START_TIMEOUT:.0f} s")


def stop_api(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(API_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _serve(engine: Engine, api: subprocess.Popen[bytes]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, engine.request_stop)

    async def watch_api() -> None:
        while True:
            await asyncio.sleep(1.0)
            if api.poll() is not None:
                log.error("API server exited with code %s; stopping", api.returncode)
                engine.request_stop()
                return

    engine.spawn(watch_api())
    await engine.start()
    # Full collections on memory growth only (b2bua/collector.py).
    engine.collector.install()
    engine.spawn(engine.collector.run())
    await engine.wait_and_stop()


def tune_gc() -> None:
    """What a process relaying media does after start-up (the relay workers, the media
    benchmark): freeze what exists out of every collection."""
    gc.freeze()


class _StopDuringStartup(Exception):
    pass


def _stop_during_startup(signum: int, _frame: object) -> None:
    raise _StopDuringStartup(signum)


def run(options: EngineOptions, api_listen: HostPort) -> int:
    # Until the event loop installs its own handlers, a stop signal unwinds through
    # the ``finally`` below so the API process is never left behind.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_during_startup)
    try:
        return _run(options, api_listen)
    except _StopDuringStartup:
        print("softswitch: stopped during start-up", flush=True)
        return 0
    except NodeNameTaken as exc:
        print(f"softswitch: {exc}", file=sys.stderr, flush=True)
        return 1


def _run(options: EngineOptions, api_listen: HostPort) -> int:
    options.var_dir.mkdir(parents=True, exist_ok=True)
    prepare_database(options.database)
    token_file, created = ensure_admin_token(options.database, options.var_dir)
    if created:
        print(f"softswitch: admin API token written to {token_file} (mode 600)", flush=True)
    else:
        print(f"softswitch: admin API token in {token_file}", flush=True)
    api = start_api(options, api_listen)
    try:
        wait_for_api(api, api_listen)
        engine = Engine(options)
        print(
            f"softswitch: SIP on {options.sip_listen} (udp, tcp), "
            f"API on http://{api_listen}/api/v1, database {_shown(options.database)}",
            flush=True,
        )
        uvloop.run(_serve(engine, api))
    finally:
        stop_api(api)
    print("softswitch: stopped", flush=True)
    return 0
