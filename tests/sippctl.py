"""Running sipp scenarios from ``tests/sipp/`` against a real softswitch."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).parent / "sipp"

# Distinct loopback addresses stand for distinct hosts: the customer trunk calls from
# CUSTOMER_IP, vendors answer on VENDOR_IP, the softswitch listens on 127.0.0.1.
CUSTOMER_IP = "127.0.0.2"
VENDOR_IP = "127.0.0.3"
VENDOR2_IP = "127.0.0.4"


@dataclass
class Sipp:
    proc: subprocess.Popen[bytes]
    workdir: Path
    name: str

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return int(self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"sipp {self.name} did not finish:\n{self.output()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        parts = []
        for path in sorted(self.workdir.glob("*")):
            if path.is_file() and path.suffix in (".log", ".txt", ".csv", ".out"):
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def sipp(
    scenario: str,
    workdir: Path,
    local_ip: str,
    local_port: int,
    remote: str | None = None,
    *,
    calls: int = 1,
    rate: float = 10.0,
    transport: str = "u1",
    service: str = "200",
    hold_ms: int = 0,
    timeout_s: int = 30,
    extra: list[str] | None = None,
) -> Sipp:
    """Start sipp with a scenario file (or a built-in ``uac``/``uas`` name)."""
    name = f"{Path(scenario).stem}-{local_ip}-{local_port}"
    run_dir = workdir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    source = ["-sn", scenario] if scenario in ("uac", "uas") else [
        "-sf", str(SCENARIOS / scenario)]
    cmd = [
        "sipp", *source,
        "-i", local_ip, "-p", str(local_port),
        "-t", transport,
        "-m", str(calls), "-r", str(rate),
        "-s", service,
        "-d", str(hold_ms),
        "-timeout", f"{timeout_s}s", "-timeout_error",
        "-nostdin",
        "-trace_err", "-trace_stat", "-stf", str(run_dir / "stats.csv"),
        "-error_file", str(run_dir / "errors.log"),
        "-max_socket", "2048",
        *(extra or []),
    ]
    if remote:
        cmd.append(remote)
    with open(run_dir / "sipp.out", "wb") as out:
        proc = subprocess.Popen(cmd, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    time.sleep(0.05)
    return Sipp(proc, run_dir, name)
