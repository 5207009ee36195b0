"""The pjsua2 test peer on its own: the bindings load, and two peers call each other.

No softswitch is involved: ``peer.py call`` dials ``peer.py answer`` directly
over loopback, which is what every softswitch test built on these peers
relies on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pjpeer import PeerProcess
from support import REPO, free_port

CHECK = REPO / "pjbuild" / "check.py"


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
