"""Debian's dnsmasq as the vendors' DNS server in the tests: on 127.0.0.1, a free port,
answering only from the records a test gives it, with a short TTL."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support import end_process, free_port

DNSMASQ = "/usr/sbin/dnsmasq"
TTL = 2  # seconds: short, so the cache expires within a test


@dataclass
class Dns:
    """dnsmasq on 127.0.0.1, answering only from its own records (``--no-resolv``)."""

    workdir: Path
    records: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Dns:
        self.port = free_port("127.0.0.1", socket.SOCK_DGRAM)
        conf = self.workdir / "dnsmasq.conf"
        lines = [f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces",
                 "no-resolv", "no-hosts", "keep-in-foreground", "pid-file=",
                 f"local-ttl={TTL}", "local=/test/", "log-queries",
                 f"log-facility={self.workdir / 'dnsmasq.log'}", *self.records]
        if os.geteuid() == 0:
            lines.append("user=root")  # no switch to "nobody", who cannot write the log
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([DNSMASQ, f"--conf-file={conf}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.proc.stderr.read()!r}"  # type: ignore[union-attr]
                                   )
            if "started" in self.log():
                return self
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not start:\n" + self.log())

    def log(self) -> str:
        path = self.workdir / "dnsmasq.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        end_process(self.proc, 10)


