"""A tshark capture on loopback for the duration of a ``with`` block."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType


class Capture:
    """Capture packets matching a BPF ``capture_filter`` into ``path``."""

    def __init__(self, path: Path, capture_filter: str) -> None:
        self.path = path
        self.filter = capture_filter
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        self.stderr_path = self.path.with_suffix(".err")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", self.filter, "-w", str(self.path), "-q"],
            stdout=subprocess.DEVNULL, stderr=self._stderr, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while b"Capturing on" not in self.stderr_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tshark did not start: " + self.stderr_path.read_text())
            time.sleep(0.05)
        # "Capturing on" is printed just before the capture starts: give it a moment.
        time.sleep(1.0)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        time.sleep(0.5)  # let the last packets reach the capture
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()

    def packets(self, display_filter: str) -> list[str]:
        """One summary line per captured packet matching ``display_filter``."""
        result = subprocess.run(
            ["tshark", "-r", str(self.path), "-Y", display_filter],
            capture_output=True, text=True, timeout=60, check=True,
        )
        return [line for line in result.stdout.splitlines() if line.strip()]
