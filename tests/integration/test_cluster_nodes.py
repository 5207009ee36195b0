"""Named nodes sharing one PostgreSQL and Redis (docs/cluster.md), without an edge: a
change through one node's API is live on the other within a second; a nonce one node
issued is genuine on the other (the cluster's key, from the database) but answered there
as stale, without counting a failure, and the phone registered is known to both;
wrong passwords spread over both nodes suspend the terminal on both, and a lift through
one node's API lifts it on both; a second process started with a name in use exits,
saying so; each node lists the other alive in ``GET /cluster``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from redisserver import RedisServer
from support import REPO, Softswitch, free_port, wait_until

from b2bua.security.digest import response_digest
from b2bua.sip.headers import parse_auth_params
from b2bua.sip.parser import parse_message

PHONE_IP = "127.0.0.7"
REALM = "cluster.example"


def register(sock: socket.socket, node: Softswitch, call_id: str, cseq: int,
             auth: str = "") -> tuple[int, str]:
    """A REGISTER of phone 3001 to ``node``; the status and WWW-Authenticate heard."""
    port = sock.getsockname()[1]
    text = (f"REGISTER sip:{REALM} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {PHONE_IP}:{port};branch=z9hG4bK-{call_id}-{cseq};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:3001@{REALM}>;tag=t{cseq}\r\nTo: <sip:3001@{REALM}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:3001@{PHONE_IP}:{port}>\r\nExpires: 600\r\n"
            f"{auth}Content-Length: 0\r\n\r\n")
    sock.sendto(text.encode(), (node.sip_host, node.sip_port))
    while True:
        reply = parse_message(sock.recv(65535))
        status = int(getattr(reply, "status", 0))
        if status >= 200:
            return status, reply.get("WWW-Authenticate") or ""


def authorization(challenge: str, password: str = "pw-3001") -> str:
    _scheme, params = parse_auth_params(challenge)
    uri = f"sip:{REALM}"
    digest = response_digest(params["algorithm"], "3001", params["realm"], password,
                             "REGISTER", uri, params["nonce"], "00000001", "c0ffee", "auth")
    return (f'Authorization: Digest username="3001",realm="{params["realm"]}",'
            f'nonce="{params["nonce"]}",uri="{uri}",response="{digest}",'
            f'algorithm={params["algorithm"]},qop=auth,nc=00000001,cnonce="c0ffee"\r\n')


def wrong_password(sock: socket.socket, node: Softswitch, call_id: str) -> int:
    """A REGISTER challenged, then answered with a wrong password: what it hears."""
    status, challenge = register(sock, node, call_id, 1)
    if status != 401:
        return status
    return register(sock, node, call_id, 2, authorization(challenge, "guess"))[0]


def test_named_nodes_share_nonces_suspensions_and_names(pg_url: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    nodes = []
    for n, ip in enumerate(("127.0.0.61", "127.0.0.62")):
        (tmp_path / f"n{n + 1}").mkdir()
        nodes.append(Softswitch(tmp_path / f"n{n + 1}", sip_host=ip, db=pg_url,
                                extra_args=["--node", f"n{n + 1}", "--redis", redis.url,
                                            "--media-ports",
                                            f"{40000 + 3000 * n}-{42999 + 3000 * n}"]))
    try:
        for node in nodes:
            node.start()
        api = nodes[0].api
        api.post("/api/v1/phones", {"username": "3001", "password": "pw-3001"})
        # A change through n1's API is live on n2 within a second.
        api.put("/api/v1/parameters/SS_SIP_AUTHENTICATION_REALM", {"value": REALM})
        assert wait_until(lambda: all(n.api.get("/api/v1/engine")["params"][
            "SS_SIP_AUTHENTICATION_REALM"] == REALM for n in nodes), timeout=1.0)

        # Challenged by n1; the right answer, on a new Call-ID, lands on n2: a new
        # challenge there, stale (n1's nonce is genuine, but its counts are on n1), not
        # a failure; answered, registered.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((PHONE_IP, 0))
            sock.settimeout(5)
            status, challenge = register(sock, nodes[0], "reg-a", 1)
            assert status == 401 and challenge
            status, again = register(sock, nodes[1], "reg-b", 2, authorization(challenge))
            assert status == 401 and "stale=true" in again, again
            assert nodes[1].api.get("/api/v1/security/stats?scope=node")[
                "failure_entries"] == 0
            status, _ = register(sock, nodes[1], "reg-b", 3, authorization(again))
            assert status == 200
        # Registered through n2, known to n1 within a second (the shared bindings).
        assert wait_until(lambda: [r["username"] for r in nodes[0].api.get(
            "/api/v1/registrations")["items"]] == ["3001"], timeout=1.0)

        # Three wrong passwords, on n1, n2, n1 (each node saw at most two): suspended on
        # both; the right password then hears 403 once on each, then nothing.
        api.put("/api/v1/parameters/SS_ENDPOINT_REGISTER_RETRY", {"value": 2})
        assert wait_until(lambda: all(n.api.get("/api/v1/engine")["params"][
            "SS_ENDPOINT_REGISTER_RETRY"] == 2 for n in nodes), timeout=5)
        assert wait_until(lambda: all(n.api.get("/api/v1/health").get("redis") == "up"
                                      for n in nodes), timeout=10)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((PHONE_IP, 0))
            sock.settimeout(5)
            for i, node in enumerate((nodes[0], nodes[1], nodes[0])):
                assert wrong_password(sock, node, f"guess-{i}") == 401
            time.sleep(0.3)  # the cluster's count comes back, the suspension is told
            for i, node in enumerate(nodes):
                assert register(sock, node, f"after-{i}", 1)[0] == 403
            suspended = [n.api.get("/api/v1/suspensions")["items"] for n in nodes]
            assert all(len(items) == 1 and items[0]["terminal"] == "3001"
                       for items in suspended), suspended
            # Lifted through n2: the right password registers on n1 again.
            status, lifted, _ = nodes[1].api.call(
                "DELETE", f"/api/v1/suspensions/3001?source_ip={PHONE_IP}")
            assert (status, lifted) == (200, {"lifted": 1}), (status, lifted)
            assert wait_until(lambda: all(not n.api.get("/api/v1/suspensions")["items"]
                                          for n in nodes), timeout=3)
            status, challenge = register(sock, nodes[0], "back", 1)
            assert status == 401
            assert register(sock, nodes[0], "back", 2, authorization(challenge))[0] == 200

        # Each of the cluster's jobs runs on one node.
        assert wait_until(lambda: sorted(job for n in nodes for job in n.api.get(
            "/api/v1/cluster")["jobs"]) == ["keepalive", "stats", "upstream"], timeout=3)

        # Each sees the other alive.
        for me, other in (("n1", "n2"), ("n2", "n1")):
            node = nodes[0] if me == "n1" else nodes[1]
            assert wait_until(lambda node=node, other=other: {
                n["name"]: n["state"] for n in node.api.get("/api/v1/cluster")["nodes"]}
                .get(other) == "alive", timeout=5)
            assert node.api.get("/api/v1/health")["node"] == me

        # A second n1 is refused, and says why.
        (tmp_path / "dup").mkdir()
        dup = subprocess.run(
            [sys.executable, "-m", "b2bua.cli", "run", "--db", pg_url, "--node", "n1",
             "--sip-listen", f"127.0.0.63:{free_port('127.0.0.63')}",
             "--api-listen", f"127.0.0.1:{free_port()}", "--media-ports", "47000-47999",
             "--var-dir", str(tmp_path / "dup")],
            capture_output=True, text=True, timeout=60, cwd=tmp_path / "dup",
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=False)
        assert dup.returncode == 1, dup.stdout + dup.stderr
        assert "node 'n1' is already running" in dup.stderr
        assert nodes[0].api.get("/api/v1/health")["engine"] == "up"  # untouched
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
