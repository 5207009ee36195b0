"""A pjsua2 peer (``pjbuild/peer.py``) run as a process whose JSON events tests follow."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from support import REPO

PEER = REPO / "pjbuild" / "peer.py"


class PeerProcess:
    """A ``peer.py`` process whose JSON events are read as they arrive."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(PEER), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
        )
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self._queue.put(json.loads(raw))
        self._queue.put(None)

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {name!r} event within {timeout} s: {self.describe()}"
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            assert event is not None, f"peer exited before {name!r}: {self.describe()}"
            self.events.append(event)
            if event["event"] == name:
                return event

    def wait_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
            if event is not None:
                self.events.append(event)
        return code

    def states(self) -> list[str]:
        return [e["state"] for e in self.events if e["event"] == "state"]

    def describe(self) -> str:
        stderr = self.stderr_path.read_text(errors="replace")[-2000:]
        return f"events={self.events}\nstderr:\n{stderr}"

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
