"""The lab (docs/lab.md) as an operator and the Vagrant VM run it: the README's
``softswitch lab up``, ``lab call`` and ``lab down`` exactly as written there, from the
repository root with the default state folder (``var/lab``), then more calls through it.

The call fails over from the dead vendor to softswitch B, its media crosses the A <-> B
hop encrypted (headers intact, payload changed) and comes back decrypted; the phone is
registered from behind the NAT and is called through it; ``lab down`` leaves no
namespace, link or process behind. Needs root, as CI has.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from docblocks import sh_blocks
from support import REPO, Api

NAT_PUBLIC = "198.19.0.20"
PHONE_ADDR = "198.19.100.2"
CUSTOMER = "198.19.0.10"
A_ADDR = "198.19.0.1"
B_ADDR = "198.19.0.40"


STATE_DIR = REPO / "var" / "lab"  # the default, as the README uses it


def readme_lab_commands() -> dict[str, list[str]]:
    """The README's lab block: ``lab up``, ``lab call``, ``lab down`` as argv, by verb."""
    (block,) = [b for b in sh_blocks(REPO / "README.md") if "softswitch lab up" in b.text]
    commands = {}
    for words in block.commands():
        assert words[:3] == ["sudo", ".venv/bin/softswitch", "lab"], words
        commands[words[3]] = words  # verbatim: ./scripts/setup installs sudo
    assert list(commands) == ["up", "call", "down"], commands
    return commands


README_LAB = readme_lab_commands()


def run_from_repo(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)


def lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``softswitch lab ARGS`` from the repository root, default state folder."""
    return run_from_repo([*README_LAB["up"][:2], "lab", *args], timeout)


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"  # exited, not yet reaped by init


def lab_names() -> tuple[list[str], list[str]]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True, timeout=30).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True, timeout=30).stdout
    return ([line.split()[0] for line in netns.splitlines() if line.startswith("sslab-")],
            [line.split(":")[1].strip() for line in links.splitlines()
             if line.split(":")[1].strip().startswith("sslab-")])


def test_lab_up_call_down(tmp_path: Path) -> None:
    state_dir = STATE_DIR
    started = time.monotonic()
    pids: list[int] = []
    try:
        up = run_from_repo(README_LAB["up"])
        assert up.returncode == 0, up.stdout + up.stderr
        assert "place a call with `softswitch lab call`" in up.stdout, up.stdout
        info = json.loads((state_dir / "lab.json").read_text())
        assert set(info["processes"]) == {"a", "b", "phone", "vendor"}
        pids = list(info["processes"].values())
        status = lab("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.startswith("lab: up")
        a = Api(info["a"]["api"], info["a"]["token"])
        b = Api(info["b"]["api"], info["b"]["token"])
        _check_phone_behind_nat(a)
        _check_vendor_call(tmp_path, a, b)
        _check_phone_call(a)
    finally:
        down = run_from_repo(README_LAB["down"])
    assert down.returncode == 0, down.stdout + down.stderr
    assert lab_names() == ([], [])
    assert pids and all(gone(pid) for pid in pids), pids
    assert not (state_dir / "lab.json").exists()
    again = lab("down")  # nothing up: still fine
    assert again.returncode == 0 and "nothing was up" in again.stdout, again.stdout
    assert time.monotonic() - started < 60


def _check_phone_behind_nat(a: Api) -> None:
    (reg,) = a.get("/api/v1/registrations")["items"]
    assert reg["username"] == "2001"
    assert reg["nat"] is True
    assert reg["source"].split(":")[0] == NAT_PUBLIC  # the NAT's address, not the phone's
    assert PHONE_ADDR in reg["contact"]


def _check_vendor_call(tmp_path: Path, a: Api, b: Api) -> None:
    with HopCapture(tmp_path / "hops.pcapng") as capture:
        call = run_from_repo(README_LAB["call"])
    assert call.returncode == 0, call.stdout + call.stderr
    assert ": answered (sipp exit 0" in call.stdout, call.stdout
    # A's CDR, through A's API: the dead vendor timed out, softswitch B answered.
    (row,) = a.get("/api/v1/cdrs")["items"]
    cdr = a.get(f"/api/v1/cdrs/{row['id']}")
    assert (cdr["final_code"], cdr["routing_gateway"], cdr["mapping_gateway"]) == (
        200, "softswitch-b", "customer")
    assert [(x["routing_gateway"], x["outcome"]) for x in cdr["attempts"]] == [
        ("dead-vendor", "invite_timeout"), ("softswitch-b", "answered")]
    media = json.loads(cdr["media"])
    assert media["relayed"] and media["encryption_mode"] == 3, media
    assert media["callee_encrypted"] and not media["caller_encrypted"], media
    assert media["caller_to_callee_packets"] >= 50 and media["callee_to_caller_packets"] >= 50
    # B's CDR: from A over the encrypted leg, answered by the vendor.
    (b_cdr,) = b.get("/api/v1/cdrs")["items"]
    assert (b_cdr["final_code"], b_cdr["mapping_gateway"], b_cdr["routing_gateway"]) == (
        200, "softswitch-a", "vendor")
    b_media = json.loads(b_cdr["media"])
    assert b_media["encryption_mode"] == 3 and b_media["caller_encrypted"], b_media
    _check_hops(capture.rtp())


def _check_hops(packets: list[tuple[str, str, bytes]]) -> None:
    """The same RTP packets (by direction, SSRC and sequence number) seen on the
    customer's link in clear and on the A <-> B link encrypted: header and length
    intact, payload changed; what the vendor echoed comes back to the customer as sent."""

    def by_seq(iface: str, src: str) -> dict[bytes, bytes]:
        return {data[:12]: data for i, s, data in packets if i == iface and s == src}

    sent, to_b = by_seq("sslab-cust", CUSTOMER), by_seq("sslab-sw2", A_ADDR)
    from_b, back = by_seq("sslab-sw2", B_ADDR), by_seq("sslab-cust", A_ADDR)
    for clear, hop in ((sent, to_b), (back, from_b)):
        common = clear.keys() & hop.keys()
        assert len(common) >= 50, (len(clear), len(hop))
        for header in common:
            assert len(hop[header]) == len(clear[header]) == 12 + 160
            assert hop[header][12:] != clear[header][12:]
    echoed = sent.keys() & back.keys()
    assert len(echoed) >= 50 and all(sent[h] == back[h] for h in echoed)


def _check_phone_call(a: Api) -> None:
    call = lab("call", "--to", "2001", "--hold", "1", "--json")
    assert call.returncode == 0, call.stdout + call.stderr
    cdr = json.loads(call.stdout)["cdr"]
    assert (cdr["final_code"], cdr["callee_phone"]) == (200, "2001")
    media = json.loads(cdr["media"])
    assert media["caller_to_callee_packets"] > 0 and media["callee_to_caller_packets"] > 0
    assert a.get("/api/v1/keepalive")["cycles"] >= 1


class HopCapture:
    """tshark on the customer's link and on the A <-> B link (root-side ports)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.err = path.with_suffix(".err")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HopCapture:
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                ["tshark", "-i", "sslab-cust", "-i", "sslab-sw2", "-f", "udp and not port 5060",
                 "-w", str(self.path), "-q"],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while b"Capturing on" not in self.err.read_bytes():
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                self.err.read_text()
            time.sleep(0.05)
        time.sleep(1.0)  # printed just before the capture really starts
        return self

    def __exit__(self, *exc: Any) -> None:
        time.sleep(0.5)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def rtp(self) -> list[tuple[str, str, bytes]]:
        """(interface, source IP, UDP payload) of every RTP-looking packet."""
        out = subprocess.run(
            ["tshark", "-r", str(self.path), "-Y", "udp", "-T", "fields",
             "-e", "frame.interface_name", "-e", "ip.src", "-e", "udp.payload"],
            capture_output=True, text=True, timeout=60, check=True).stdout
        packets = []
        for line in out.splitlines():
            iface, src, payload = [*line.split("\t"), "", ""][:3]
            data = bytes.fromhex(payload.replace(":", ""))
            if len(data) >= 12 and data[0] >> 6 == 2:
                packets.append((iface, src, data))
        return packets
