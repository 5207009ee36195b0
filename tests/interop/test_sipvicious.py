"""SIPVicious (svmap, svwar, svcrack from Debian) against a running softswitch, with
SS_REPLY_UNAUTHORIZED On and Off: what comes back to the scanner is captured and counted.
No account may be told from a name that is no account, password guesses stop at the
suspension rule, and a suspended scanner hears at most one 403."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from capture import Capture
from rawsip import exchange, request
from sippctl import CUSTOMER_IP
from support import Softswitch, free_port, wait_until

from b2bua.sip.headers import parse_auth_params

SCANNER_IP = "127.0.0.49"
CAPTURE = "net 127.0.0.48/29"
# svcrack 0.3.3 ignores -b and sends from 127.0.0.1: each run gets its own port instead.
CRACKED = ("1001", "2002", "acme")
REGISTER_RETRY = 6  # SS_ENDPOINT_REGISTER_RETRY's default: 7 password checks, then silence

pytestmark = pytest.mark.skipif(shutil.which("svcrack") is None,
                                reason="sipvicious not installed")


@pytest.fixture(params=["On", "Off"])
def switch(request: pytest.FixtureRequest, softswitch: Softswitch) -> Iterator[Softswitch]:
    """A phone account 1001, a password-mode gateway acme and an IP trunk."""
    api = softswitch.api
    api.post("/api/v1/phones", {"username": "1001", "password": "pw-1001-long"})
    api.post("/api/v1/mapping-gateways", {"name": "acme", "auth_mode": "password",
                                          "username": "acme", "password": "s3cret-long"})
    api.post("/api/v1/mapping-gateways", {"name": "trunk", "ips": [CUSTOMER_IP]})
    api.put("/api/v1/parameters/SS_REPLY_UNAUTHORIZED", {"value": request.param})
    assert wait_until(lambda: api.get("/api/v1/engine")["params"][
        "SS_REPLY_UNAUTHORIZED"] == request.param and api.get("/api/v1/engine")[
        "mapping_gateways"] == 2, timeout=2)
    yield softswitch


def _on(switch: Softswitch) -> bool:
    return bool(switch.api.get("/api/v1/engine")["params"]["SS_REPLY_UNAUTHORIZED"] == "On")


def _tool(tmp_path: Path, *args: str, timeout: float = 60) -> str:
    """Run one SIPVicious tool (its session files under tmp_path); its output."""
    env = dict(os.environ, HOME=str(tmp_path))
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr


def _start_tool(home: Path, *args: str) -> subprocess.Popen[str]:
    """Start one SIPVicious tool with its session files under ``home``."""
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    return subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=home, stdin=subprocess.DEVNULL)


def _finish_tool(run: subprocess.Popen[str], timeout: float) -> str:
    try:
        out, _ = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        out, _ = run.communicate()
        raise AssertionError(f"{run.args} did not finish:\n{out}") from None
    return out


def _replies(cap: Capture, dst: str, port: int | None = None) -> list[tuple[int, bytes]]:
    """(status code, payload) of every SIP reply the softswitch sent to ``dst`` (and
    ``port``); anything else sent there counts as code 0."""
    shown = f"ip.src==127.0.0.1 && ip.dst=={dst}" + (f" && udp.dstport=={port}" if port else "")
    out = subprocess.run(
        ["tshark", "-r", str(cap.path), "-Y", shown, "-d", f"udp.port=={port or 5060},sip",
         "-T", "fields", "-e", "sip.Status-Code", "-e", "udp.payload"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    replies = []
    for line in out.splitlines():
        code, _, payload = line.partition("\t")
        replies.append((int(code or 0), bytes.fromhex(payload.replace(":", ""))))
    return replies


def _answers(cap: Capture, port: int) -> list[tuple[int, bytes, bool]]:
    """The softswitch's replies to the requests from 127.0.0.1:``port``, in order: (status
    code, payload, whether the request carried credentials), matched by Via branch."""
    out = subprocess.run(
        ["tshark", "-r", str(cap.path), "-Y", f"udp.port=={port}", "-d",
         f"udp.port=={port},sip", "-T", "fields", "-e", "udp.srcport", "-e",
         "sip.Status-Code", "-e", "sip.Via.branch", "-e", "sip.auth.username", "-e",
         "udp.payload"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    signed: dict[str, bool] = {}
    answers = []
    for line in out.splitlines():
        src, code, branch, username, payload = (line.split("\t") + [""] * 5)[:5]
        branch = branch.split(",")[0]
        if int(src) == port:
            signed[branch] = bool(username)
        else:
            answers.append((int(code or 0), bytes.fromhex(payload.replace(":", "")),
                            signed.get(branch, False)))
    return answers


def test_svmap_sees_the_switch_only_when_on(tmp_path: Path, switch: Softswitch) -> None:
    with Capture(tmp_path / "svmap.pcap", CAPTURE) as cap:
        found = [_tool(tmp_path, "svmap", "-b", SCANNER_IP, "-p", str(switch.sip_port),
                       "-m", method, "127.0.0.1", timeout=30)
                 for method in ("OPTIONS", "INVITE")]
    replies = _replies(cap, SCANNER_IP)
    target = f"127.0.0.1:{switch.sip_port}"
    if _on(switch):
        assert all(target in out for out in found)
        assert {code for code, _ in replies} == {401}
    else:
        assert not any(target in out for out in found), found
        assert replies == []


NAMES = ["1000", "1001", "1002", "2002", "acme", "trunk"]


NONCE_RE = re.compile(rb'nonce="([^"]*)"')
ECHOED = (b"via:", b"from:", b"to:", b"call-id:", b"cseq:")


def _own_bytes(reply: bytes) -> int:
    """The bytes of a reply that the softswitch chose: without the headers it copies
    from the request (random in svcrack's requests) and the nonce's random part."""
    kept = [line for line in reply.split(b"\r\n") if not line.lower().startswith(ECHOED)]
    return sum(len(line) + 2 for line in kept) - sum(len(n) for n in NONCE_RE.findall(reply))


def _shape(reply: bytes, name: str) -> tuple[object, ...]:
    """A reply as a prober compares them: status line, header names, the challenge's
    parameters and the length, without what is random or echoes the request (the nonce,
    the name in From and To)."""
    head = reply.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    names = [line.split(":", 1)[0] for line in lines[1:]]
    challenge = sorted(
        (k, v) for line in lines[1:]
        if line.lower().startswith(("www-authenticate:", "proxy-authenticate:"))
        for k, v in parse_auth_params(line.split(":", 1)[1].strip())[1].items()
        if k != "nonce")
    nonces = sum(len(n) for n in NONCE_RE.findall(reply))
    return lines[0], names, challenge, len(reply) - nonces - 2 * len(name)


@pytest.mark.parametrize("method", ["REGISTER", "INVITE", "OPTIONS"])
def test_svwar_finds_no_account(tmp_path: Path, switch: Softswitch, method: str) -> None:
    out = _tool(tmp_path, "svwar", "--force", "-b", SCANNER_IP, "-p", str(switch.sip_port),
                "-m", method, "-e", "1000-1010", "--maximumtime=2", "127.0.0.1")
    assert "found nothing" in out and "1001" not in out.split("found nothing")[0].split(
        "Extension")[-1], out
    # The same comparison by hand, over every name: an account, a gateway's username,
    # nobody, an IP trunk's name. Every reply has the same shape, or there is none.
    shapes = {}
    for name in NAMES:
        port = free_port(SCANNER_IP)
        got, _ = exchange(request(method, "127.0.0.1", switch.sip_port, SCANNER_IP, port,
                                  user=name, from_user=name), SCANNER_IP,
                          ("127.0.0.1", switch.sip_port), 0.4, src_port=port)
        shapes[name] = [_shape(r, name) for r in dict.fromkeys(got)]
    assert all(shape == shapes["2002"] for shape in shapes.values()), shapes
    on, register = _on(switch), method == "REGISTER"
    assert (shapes["2002"] != []) == (on or register)  # Off: REGISTER alone is answered


def test_svcrack_guesses_stop_at_the_suspension(tmp_path: Path, switch: Softswitch) -> None:
    """svcrack against a phone, a name that is nobody's and a gateway's username, each
    from its own port: the same answers for all three, at most 7 password checks each,
    then silence (one 403 for the suspension when On) while svcrack keeps going."""
    ports = {user: free_port("127.0.0.1") for user in CRACKED}
    with Capture(tmp_path / "svcrack.pcap", f"udp port {switch.sip_port}") as cap:
        # The three at once (each with its own session files): each waits out its
        # silence in parallel with the others.
        runs = {user: _start_tool(tmp_path / user, "svcrack", "-P", str(port), "-p",
                                  str(switch.sip_port), "-u", user, "-r", "1-100",
                                  "--maximumtime=2", "127.0.0.1")
                for user, port in ports.items()}
        outputs = {user: _finish_tool(run, timeout=90) for user, run in runs.items()}
    for out in outputs.values():
        assert "found nothing" in out, out
    answers = {user: _answers(cap, port) for user, port in ports.items()}
    told = [403] if _on(switch) else []
    for user, got in answers.items():
        # Each password check answered 401 until the suspension, then one 403 (On) or
        # nothing; svcrack's requests without credentials (one per round it starts, more
        # when an answer is slow to come) get the challenge, and nothing once suspended.
        checks = [code for code, _, signed in got if signed]
        assert checks == [401] * REGISTER_RETRY + told, (user, got)
        challenges = [code for code, _, signed in got if not signed]
        assert challenges and set(challenges) == {401}, (user, got)
        last_check = max(i for i, (_, _, signed) in enumerate(got) if signed)
        assert all(signed for _, _, signed in got[last_check:]), (user, got)
    sizes = {user: ([_own_bytes(p) for _, p, signed in got if signed],
                    {_own_bytes(p) for _, p, signed in got if not signed})
             for user, got in answers.items()}
    assert sizes["1001"] == sizes["2002"] == sizes["acme"], sizes
    stats = switch.api.get("/api/v1/security/stats")
    assert stats["suspended"] == {"registration": 3}
    assert stats["challenged"] == {"phone": 7, "unknown": 7, "gateway": 7}
    assert stats["authenticated"] == {}
    # svcrack kept guessing (and retransmitting) into the silence: counted, not answered.
    assert stats["dropped"]["suspended"] > 3
    assert stats.get("rejected", {}).get("suspended", 0) == (3 if _on(switch) else 0)
    suspended = {s["terminal"] for s in switch.api.get("/api/v1/suspensions")["items"]}
    assert suspended == set(CRACKED)
