"""Sippy B2BUA 2.5 (PyPI ``sippy``) as a real peer: a B2BUA that accepts calls from
``accept_ip`` on ``host:port`` and sends every one to ``route`` (``host:port``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from support import end_process


@dataclass
class SippyB2bua:
    workdir: Path
    host: str
    port: int
    route: str
    accept_ip: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> SippyB2bua:
        d = self.workdir / f"sippy-{self.port}"
        d.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "sippy.b2bua", "-f", "-u", "-A", "0",
               "-l", self.host, "-p", str(self.port), "-s", self.route,
               "-a", self.accept_ip, "-P", str(d / "b2bua.pid"), "-L", str(d / "b2bua.log"),
               "-c", str(d / "b2bua.sock")]
        with open(d / "stdout.txt", "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=d, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         env=dict(os.environ, SIPLOG_BEND="none"))
        deadline = time.monotonic() + 15
        while not _bound(self.host, self.port):  # its socket is bound when the port is taken
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Sippy B2BUA did not start:\n{self.log()}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        out = self.workdir / f"sippy-{self.port}" / "stdout.txt"
        return out.read_text(errors="replace")[-3000:] if out.exists() else ""

    def stop(self) -> None:
        """TERM, then KILL (it does not exit on TERM while calls remain), by its pid."""
        end_process(self.proc, 10)


def _bound(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
        return False
