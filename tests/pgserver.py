"""A throwaway PostgreSQL 15 for the tests: Debian's binaries, a cluster made with
``initdb`` in a temporary folder, listening on 127.0.0.1 at a free port (its Unix socket
inside that folder), trust authentication, durability off. Nothing of the system's own
clusters is used or started.

``SOFTSWITCH_TEST_DB_URL`` names an external server instead (a ``postgresql://`` URL
whose user may create databases); each test still gets a database of its own on it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from support import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "softswitch"
# Root may not run a cluster: it belongs to Debian's unprivileged postgres user then.
SERVER_USER = "postgres"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
EXTERNAL_ENV = "SOFTSWITCH_TEST_DB_URL"

# Tests throw the data away: no fsync, small memory, room for every test's connections.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "100",
    "log_min_messages": "warning",
}


def _binary(name: str) -> str:
    path = PG_BIN / name
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: run scripts/setup (it installs postgresql)")
    return str(path)


def _server_user() -> pwd.struct_passwd | None:
    """Whom the cluster runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise RuntimeError(f"no {SERVER_USER!r} user to run PostgreSQL as root: "
                           "run scripts/setup (the postgresql package creates it)") from None


@dataclass
class PgServer:
    """One private cluster; :meth:`stop` and :meth:`start` again keep its data and port."""

    root: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def create(self) -> PgServer:
        """A new cluster in a new temporary folder (under /tmp: the server user must reach
        it, which pytest's own root-only folders do not allow)."""
        self.root = Path(tempfile.mkdtemp(prefix="softswitch-pg-"))
        user = _server_user()
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        (self.root / "socket").mkdir()
        if user is not None:
            os.chown(self.root / "socket", user.pw_uid, user.pw_gid)
        who = _as(user)
        done = subprocess.run(
            [_binary("initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, timeout=120, cwd=self.root, user=who.user, group=who.group,
            extra_groups=who.extra_groups, env=who.env)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n"
                               f"{done.stdout.decode()}{done.stderr.decode()}")
        self.port = free_port("127.0.0.1")
        return self

    def start(self) -> PgServer:
        if self.root is None:
            self.create()
        assert self.root is not None
        options = [f"--{name.replace('_', '-')}={value}" for name, value in SETTINGS.items()]
        who = _as(_server_user())
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [_binary("postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.root / "socket"), *options],
                stdout=log, stderr=log, cwd=self.root, start_new_session=True,
                user=who.user, group=who.group, extra_groups=who.extra_groups, env=who.env)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.proc.returncode}):\n{self.log()}")
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not start:\n{self.log()}") from None
            time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions are ended) by the postmaster's pid; SIGKILL
        when it lingers."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def destroy(self) -> None:
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def log(self) -> str:
        if self.root is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]


@dataclass(frozen=True)
class _Identity:
    """Popen arguments that run a child as another user (none of our groups kept)."""

    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None
    env: dict[str, str] | None = None


def _as(user: pwd.struct_passwd | None) -> _Identity:
    if user is None:
        return _Identity()
    return _Identity(user.pw_uid, user.pw_gid, [],
                     {**os.environ, "HOME": user.pw_dir, "USER": user.pw_name})


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` with its database replaced by ``name``."""
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def create_database(admin_url: str) -> str:
    """A new empty database with a random name on the server of ``admin_url``; its URL."""
    name = f"softswitch_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url``, ending sessions a test left open on it (first, and
    waited for closely: DROP ... WITH (FORCE) itself looks again only every 100 ms)."""
    name = urlsplit(url).path.lstrip("/")
    others = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"SELECT pg_terminate_backend(pid) {others}", (name,))
        deadline = time.monotonic() + STOP_TIMEOUT
        while conn.execute(f"SELECT COUNT(*) {others}", (name,)).fetchone() != (0,):
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                     .format(sql.Identifier(name)))


def external_url() -> str | None:
    return os.environ.get(EXTERNAL_ENV) or None
