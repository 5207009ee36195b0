"""Debian's kamailio as a real record-routing proxy in front of the softswitch or a
vendor, configured by ``tests/interop/kamailio/proxy.cfg``."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from support import end_process

CONFIGS = Path(__file__).parent / "interop" / "kamailio"
DEPLOY = Path(__file__).parent.parent / "deploy" / "kamailio"  # the configs operators run


def kamailio_version() -> str:
    out = subprocess.run(["kamailio", "-v"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return out.split()[1] if out.startswith("version:") else out.splitlines()[0]


@dataclass
class Kamailio:
    """One kamailio on ``host:port`` running ``config`` (``proxy.cfg``: initial requests
    go to ``next_hop``, ``host:port``; ``registrar.cfg``: ``values`` fill it in)."""

    workdir: Path
    host: str
    port: int
    next_hop: str = ""
    config: str = "proxy.cfg"  # in tests/interop/kamailio, unless ``config_file``
    config_file: Path | None = None
    values: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"kamailio-{self.port}.log"

    @property
    def rundir(self) -> Path:
        return self.workdir / f"kamailio-{self.port}.run"

    def rpc(self, *command: str) -> str:
        """A control command (``ctl`` module's socket in ``rundir``), its output."""
        return subprocess.run(["kamcmd", "-s", f"unix:{self.rundir}/kamailio_ctl", *command],
                              capture_output=True, text=True, timeout=10, check=True).stdout

    def start(self) -> Kamailio:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / f"kamailio-{self.port}.cfg"
        text = (self.config_file or CONFIGS / self.config).read_text()
        for name, value in {"LISTEN": self.address, "NEXT_HOP": f"sip:{self.next_hop}",
                            "RUNDIR": str(self.rundir), **self.values}.items():
            text = text.replace("{{" + name + "}}", value)
        cfg.write_text(text)
        rundir = self.rundir
        rundir.mkdir(exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["kamailio", "-f", str(cfg), "-DD", "-E", "-m", "32", "-M", "8",
                 "-Y", str(rundir), "-P", str(rundir / "kamailio.pid")],
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 15
        while b"SO_RCVBUF is finally" not in self.log_path.read_bytes():  # socket ready
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start:\n{self.log()}")
            time.sleep(0.1)
        time.sleep(0.2)  # its worker processes take the socket just after
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM by its pid: its main process ends its children."""
        end_process(self.proc, 10)
