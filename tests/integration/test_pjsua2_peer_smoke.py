"""The pjsua2 test peer on its own: the bindings load, and two peers call each other.

No softswitch is involved: ``peer.py call`` dials ``peer.py answer`` directly
over loopback, which is what every softswitch test built on these peers
relies on.
"""

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

from support import REPO, free_port

CHECK = REPO / "pjbuild" / "check.py"
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


def test_check_reports_version_and_call_limit() -> None:
    result = subprocess.run(
        [sys.executable, str(CHECK)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    report = json.loads(lines[0])
    assert report["pjsua2"].split(".")[0].isdigit(), report
    assert report["max_calls"] >= 2, report


def test_peer_calls_peer_directly(tmp_path: Path) -> None:
    port = free_port()
    peers: list[PeerProcess] = []
    try:
        answer = PeerProcess(
            ["answer", "--local", f"127.0.0.1:{port}", "--ring", "0.2", "--timeout", "20"],
            tmp_path / "answer.err",
        )
        peers.append(answer)
        ready = answer.wait_event("ready", timeout=10)
        assert ready["local"] == f"127.0.0.1:{port}"

        call = PeerProcess(
            ["call", "--local", "127.0.0.1:0", "--target", f"sip:100@127.0.0.1:{port}",
             "--hold", "1", "--timeout", "15"],
            tmp_path / "call.err",
        )
        peers.append(call)

        assert call.wait_exit(timeout=30) == 0, call.describe()
        assert answer.wait_exit(timeout=30) == 0, answer.describe()

        for peer in (call, answer):
            states = peer.states()
            assert "CONFIRMED" in states, peer.describe()
            assert states[-1] == "DISCONNECTED", peer.describe()
            assert states.index("CONFIRMED") < len(states) - 1, peer.describe()
        assert call.states()[0] == "CALLING"
        incoming = [e for e in answer.events if e["event"] == "incoming"]
        assert len(incoming) == 1, answer.describe()
        assert incoming[0]["ruri"] == f"sip:100@127.0.0.1:{port}"
        for peer in (call, answer):
            assert [e["code"] for e in peer.events if e["event"] == "exit"] == [0]
    finally:
        for peer in peers:
            peer.close()
