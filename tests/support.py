"""Helpers shared by the tests: free ports and a real ``softswitch run`` process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b2bua.storage import open_database
from b2bua.storage.backend import Database

REPO = Path(__file__).resolve().parents[1]
SOFTSWITCH = [sys.executable, "-m", "b2bua.cli"]
# SOFTSWITCH_TEST_SIGNALLING_WORKERS=2 runs every softswitch of the suite with that many
# signalling workers (a test's own --signalling-workers comes later and wins).
SIGNALLING_WORKERS = (["--signalling-workers", os.environ["SOFTSWITCH_TEST_SIGNALLING_WORKERS"]]
                      if os.environ.get("SOFTSWITCH_TEST_SIGNALLING_WORKERS") else [])
# A DNS server on loopback where nothing listens: a gateway named by a test (or by the
# API fuzzer) is never looked up outside 127.0.0.0/8. A test's own --dns-server wins.
NO_DNS = ["--dns-server", "127.0.0.1:9"]


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both UDP and TCP on ``host`` right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s2:
                s2.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


@dataclass
class Api:
    base: str
    token: str

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {self.token if token == 'default' else token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, _decode(raw), dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, _decode(raw), dict(err.headers)

    def get(self, path: str, **kw: Any) -> Any:
        status, body, _ = self.call("GET", path, **kw)
        assert status == 200, (status, body)
        return body

    def post(self, path: str, body: Any) -> Any:
        status, data, _ = self.call("POST", path, body)
        assert status in (200, 201), (status, data)
        return data

    def put(self, path: str, body: Any) -> Any:
        status, data, _ = self.call("PUT", path, body)
        assert status == 200, (status, data)
        return data


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


@dataclass
class Softswitch:
    """A real ``softswitch run`` in its own folder, on its own ports; its database is
    ``db`` (a ``postgresql://`` URL) when given, else a SQLite file under ``var/``."""

    workdir: Path
    sip_host: str = "127.0.0.1"
    sip_port: int = 0
    api_port: int = 0
    extra_args: list[str] = field(default_factory=list)
    db: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, timeout: float = 20.0) -> Softswitch:
        self.sip_port = self.sip_port or free_port(self.sip_host)
        while not self.api_port or self.api_port == self.sip_port:  # a port freed twice
            self.api_port = free_port()
        self.log_path = self.workdir / "softswitch.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        cmd = [*SOFTSWITCH, "run", "--db", self.db_target,
               "--sip-listen", f"{self.sip_host}:{self.sip_port}",
               "--api-listen", f"127.0.0.1:{self.api_port}",
               # Relay ports apart from the pjsua2 peers' RTP ports (20000-30000).
               "--media-ports", "40000-49999", *SIGNALLING_WORKERS, *NO_DNS, *self.extra_args]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"softswitch exited {self.proc.returncode}:\n{self.log()}")
            try:
                health = Api(self.api_base, "").call("GET", "/api/v1/health", token=None)
                if health[0] == 200 and health[1]["engine"] == "up":
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"softswitch did not start:\n{self.log()}")

    @property
    def db_path(self) -> Path:
        """The SQLite file (there is none when ``db`` names a server)."""
        return self.workdir / "var" / "softswitch.db"

    @property
    def db_target(self) -> str:
        """What ``--db`` is given: the server's URL, else the SQLite file."""
        return self.db if self.db is not None else str(self.db_path)

    def database(self) -> Database:
        """A connection of the test's own to the switch's database (close it)."""
        return open_database(self.db_target)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api(self) -> Api:
        token = (self.workdir / "var" / "admin-token").read_text().strip()
        return Api(self.api_base, token)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            return result
        time.sleep(interval)


def ip_trunks(switch: Softswitch, customer_ip: str, vendor_ip: str, vendor_port: int) -> None:
    """A mapping gateway "in" authenticated by ``customer_ip`` and a routing gateway "out"
    to ``vendor_ip:vendor_port``, loaded by the engine when this returns."""
    api = switch.api
    api.post("/api/v1/mapping-gateways", {"name": "in", "ips": [customer_ip]})
    api.post("/api/v1/routing-gateways", {"name": "out", "host": vendor_ip,
                                          "port": vendor_port})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)


def clean_copy(dest: Path) -> Path:
    """The repository as a fresh clone has it: the files git tracks (and new ones not
    ignored), as they are in the working tree; no venv, no ``var/``, no build output."""
    listing = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True, timeout=30).stdout
    for name in filter(None, listing.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode & 0o777)
    return dest


def end_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM to a process this test started, SIGKILL when it lingers past ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
