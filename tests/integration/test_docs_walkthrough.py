"""The operator guide's first call (``docs/operator-guide.md``, sections 1 to 6) and the
README's API examples, run as written on a clean copy of the repository, and what they
say checked: the documents cannot drift from the product unnoticed.

Each shell line of each block runs in its own ``bash`` the way a reader types it, with
the reader's ``export`` and ``NAME=...`` lines carried to later ones. The reader is in a
network namespace of its own, so the guide's fixed ports (SIP 5060, API 8088) and
loopback addresses (127.0.0.2, 127.0.0.3) are the guide's and nothing else's; that needs
root, as CI has. The copy shares the project's venv and node_modules (the install is
``test_install.py``'s and ``./scripts/test``'s job); everything else (``var/``, tokens,
the database, the CSV) is the copy's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docblocks import Block, sh_blocks
from support import REPO, clean_copy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

GUIDE = REPO / "docs" / "operator-guide.md"
_ASSIGNMENT = re.compile(r"^(export\s+)?[A-Za-z_][A-Za-z0-9_]*=")


class Reader:
    """A shell user of the documents, in ``folder``, inside network namespace ``ns``."""

    def __init__(self, ns: str, folder: Path) -> None:
        self.ns = ns
        self.folder = folder
        self.carried: list[str] = []  # export and assignment lines typed so far
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": str(folder), "LANG": "C.UTF-8"}

    def _argv(self, line: str) -> list[str]:
        script = "\n".join([*self.carried, line])
        return ["ip", "netns", "exec", self.ns, "bash", "-o", "pipefail", "-c", script]

    def type(self, line: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self._argv(line), cwd=self.folder, env=self.env, text=True,
                              capture_output=True, timeout=timeout, check=False)
        if _ASSIGNMENT.match(line):
            self.carried.append(line)
        return done

    def ok(self, line: str, timeout: float = 60) -> str:
        done = self.type(line, timeout)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, line: str, log: Path) -> subprocess.Popen[bytes]:
        """A command that stays in the foreground of its terminal (the softswitch)."""
        with open(log, "ab") as out:
            return subprocess.Popen(self._argv(f"exec {line}"), cwd=self.folder,
                                    env=self.env, stdout=out, stderr=out)

    def wait_engine_up(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + 90  # ./scripts/setup checks the install first
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            done = self.type("curl -s localhost:8088/api/v1/health", timeout=10)
            # The engine, not only the database: the API answers before the engine's control socket.
            if done.returncode == 0 and engine_up(done.stdout):
                return
            time.sleep(0.2)
        raise AssertionError("softswitch did not come up:\n" + log.read_text()[-3000:])


def engine_up(answer: str) -> bool:
    try:
        return bool(json.loads(answer).get("engine") == "up")
    except ValueError:
        return False


def lines(block: Block) -> list[str]:
    """The block's command lines as a reader types them (continuations joined)."""
    return [line for line in block.text.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def first_call_blocks() -> Iterator[Block]:
    for block in sh_blocks(GUIDE):
        if re.match(r"[1-6]\. ", block.heading):
            yield block


class Blocks:
    """The guide's blocks in order; each step names the block it expects next."""

    def __init__(self) -> None:
        self.pending = list(first_call_blocks())

    def next(self, first: str) -> list[str]:
        assert self.pending, f"the guide has no block starting {first!r} any more"
        block = self.pending.pop(0)
        found = lines(block)
        assert found[0].startswith(first), (
            f"expected the block starting {first!r} in {block.heading!r}, found {found[0]!r}:"
            " a block added or moved in the guide needs its step here")
        return found


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    folder = clean_copy(tmp_path / "softswitch")
    (folder / ".venv").symlink_to(REPO / ".venv")
    # The console's front-end packages too: the copy's namespace has no registry to reach.
    (folder / "node_modules").symlink_to(REPO / "node_modules")
    ns = f"ssdoc{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30)
        yield Reader(ns, folder)
    finally:
        # Whatever the walk left running in its namespace (sipp -bg, a softswitch) was
        # started by this test: end it by pid, then remove the namespace.
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                              timeout=30, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", ns], check=False, timeout=30)


def test_operator_guide_first_call_as_written(reader: Reader, tmp_path: Path) -> None:
    blocks = Blocks()
    log = tmp_path / "softswitch.log"
    var = reader.folder / "var"

    # 1. Install and start: ./scripts/run, up with the defaults, stopped by SIGTERM (exit 0).
    (run,) = blocks.next("./scripts/run")
    proc = reader.start(run, log)
    reader.wait_engine_up(proc, log)
    assert (var / "softswitch.db").exists()
    assert (var / "admin-token").stat().st_mode & 0o777 == 0o600
    assert stop(proc) == 0, log.read_text()[-3000:]
    # ... and started by hand with chosen addresses; it stays up for the rest of the walk.
    setup, run_by_hand = blocks.next("./scripts/setup")
    reader.ok(setup, timeout=300)
    assert "softswitch run" in run_by_hand
    proc = reader.start(run_by_hand, log)
    try:
        reader.wait_engine_up(proc, log)
        walk_the_guide(reader, blocks)
        walk_the_readme(reader)
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert blocks.pending == [], "a block of the first call is not walked"


def walk_the_guide(reader: Reader, blocks: Blocks) -> None:
    export, health, token = blocks.next("export PATH")
    reader.ok(export)
    assert json.loads(reader.ok(health)) == {"status": "ok", "engine": "up", "database": "up"}
    assert re.fullmatch(r"\S{20,}\n", reader.ok(token))  # a read token, printed once

    # 2. A customer trunk and a vendor, with the operator commands ...
    add_mapping, add_routing, listing = blocks.next("softswitch gw add mapping")
    reader.ok(add_mapping)
    reader.ok(add_routing)
    listed = reader.ok(listing)
    assert "cust-a" in listed and "vendor-a" in listed and "127.0.0.3" in listed
    # ... or with curl, instead: after the commands, refused with 409 (the names are taken).
    auth, post_mapping, post_routing = blocks.next("AUTH=")
    reader.ok(auth)
    for post in (post_mapping, post_routing):
        assert json.loads(reader.ok(post))["status"] == 409
    reader.ok("softswitch gw rm mapping cust-a")
    reader.ok("softswitch gw rm routing vendor-a")
    assert json.loads(reader.ok(post_mapping))["name"] == "cust-a"
    vendor = json.loads(reader.ok(post_routing))
    assert (vendor["host"], vendor["port"], vendor["prefixes"]) == ("127.0.0.3", 5070, ["2"])
    engine_state = 'curl -s -H "$AUTH" localhost:8088/api/v1/engine'
    time.sleep(1.0)  # "the engine picks changes up within a second"
    engine = json.loads(reader.ok(engine_state))
    assert (engine["mapping_gateways"], engine["routing_gateways"]) == (1, 1), engine

    # 3. A phone.
    phone_add, phone_list = blocks.next("echo 'Phone-secret-3001' | softswitch phone add")
    reader.ok(phone_add)
    assert "3001" in (listed := reader.ok(phone_list)) and "Desk 1" in listed

    # 4. A test call with sipp: the second sipp exits 0 after a 2 s answered call.
    vendor_sipp, customer_sipp = blocks.next("sipp -sf tests/sipp/uas_answer.xml")
    background = reader.type(vendor_sipp)  # the parent exits (99) once the child runs
    assert re.match(r"Background mode - PID=\[\d+\]", background.stdout), background
    reader.ok(customer_sipp, timeout=60)

    # 5. The CDR.
    tail, tail_api, one, csv = blocks.next("softswitch cdr tail")
    assert re.search(r"\b200\b", reader.ok(tail))
    (cdr,) = json.loads(reader.ok(tail_api))["items"]
    assert (cdr["callee"], cdr["final_code"], cdr["mapping_gateway"],
            cdr["routing_gateway"]) == ("200", 200, "cust-a", "vendor-a"), cdr
    assert 1.5 <= cdr["duration"] <= 4, cdr
    full = json.loads(reader.ok(one))
    assert [(a["routing_gateway"], a["outcome"]) for a in full["attempts"]] == [
        ("vendor-a", "answered")], full
    reader.ok(csv)
    rows = (reader.folder / "cdrs.csv").read_text().splitlines()
    assert len(rows) == 2 and "final_code" in rows[0], rows

    # 6. Watch it: one answered call counted; the vendor's creation in the audit log.
    metrics, audit = blocks.next("curl -s -H \"$AUTH\" localhost:8088/api/v1/metrics")
    assert re.fullmatch(r"softswitch_calls_answered_total 1(\.0)?\n", reader.ok(metrics))
    entries: list[dict[str, Any]] = json.loads(reader.ok(audit))["items"]
    assert any(e["action"] == "create" and e["actor"] == "token:admin" for e in entries), \
        entries


def walk_the_readme(reader: Reader) -> None:
    """The README's API block: the health check, a parameter read, then changed."""
    (block,) = [b for b in sh_blocks(REPO / "README.md") if "TOKEN=" in b.text]
    token, health, get, put = lines(block)
    reader.ok(token)
    assert json.loads(reader.ok(health))["engine"] == "up"
    assert json.loads(reader.ok(get))["value"] == "On"
    assert json.loads(reader.ok(put))["value"] == "Off"
    assert json.loads(reader.ok(get))["value"] == "Off"
