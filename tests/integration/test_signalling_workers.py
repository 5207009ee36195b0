"""Two signalling workers (``--signalling-workers 2``) with real sipp peers: calls shared
by Call-ID, each handled whole by one worker, the API seeing all of them. Sharing calls
and following registrations run on PostgreSQL too (each worker watches the database on
its own)."""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from rawsip import request, status_codes
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until
from test_basic_calls import cdrs as all_cdrs
from test_basic_calls import run_pair
from test_edge_security import (
    NATTED_IP,
    NONCE_RE,
    PASSWORD_GW,
    REALM_RE,
    _send,
    security,
    vendor_and,
)
from test_registrar import PHONE_IP, register
from test_registrar import setup as setup_phones
from test_sqlite_locked import _cdr_counts

from b2bua.security.digest import response_digest
from b2bua.sip._dispatch import route


def call_id_message(call_id: str) -> bytes:
    return f"BYE sip:x SIP/2.0\r\nCall-ID: {call_id}\r\n\r\n".encode()


def worker_of(call_id: str) -> int:
    return route(call_id_message(call_id), 2)


def worker_pids(switch: Softswitch) -> list[int]:
    assert switch.proc is not None
    pid = switch.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children
            if b"b2bua.signalling" in Path(f"/proc/{c}/cmdline").read_bytes()]


def descendants(pid: int) -> list[int]:
    try:
        children = [int(c) for c in
                    Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return children + [d for c in children for d in descendants(c)]


def relay_port_ranges(switch: Softswitch) -> list[tuple[int, int]]:
    """The --ports of every relay worker of every signalling worker."""
    assert switch.proc is not None
    ranges = []
    for pid in descendants(switch.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"b2bua.media.worker" in argv:
            low, _, high = argv[argv.index(b"--ports") + 1].partition(b"-")
            ranges.append((int(low), int(high)))
    return sorted(ranges)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def switch(tmp_path: Path, backend_db: str | None) -> Iterator[Softswitch]:
    running = Softswitch(tmp_path, extra_args=["--signalling-workers", "2"],
                         db=backend_db).start()
    try:
        yield running
    finally:
        code = running.stop()
        assert code == 0, f"softswitch exit code {code}\n{running.log()[-3000:]}"


def configure(switch: Softswitch, transport: str = "udp") -> int:
    vendor_port = free_port(VENDOR_IP)
    api = switch.api
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                          "port": vendor_port, "transport": transport})
    # Each worker reloads the configuration on its own: wait until both route.
    uas_t = "t1" if transport == "tcp" else "u1"
    assert wait_until(lambda: _both_route(switch, vendor_port, uas_t), timeout=10)
    return vendor_port


def _both_route(switch: Softswitch, vendor_port: int, uas_t: str) -> bool:
    status = switch.api.get("/api/v1/engine")
    return bool(status["routing_gateways"] == 1) and _probe_calls(switch, vendor_port, uas_t)


def _probe_calls(switch: Softswitch, vendor_port: int, uas_t: str = "u1") -> bool:
    """Both workers have the gateways once a few calls all succeed (they spread)."""
    before = switch.api.get("/api/v1/stats")["answered"]
    uas = sipp("uas_answer.xml", switch.workdir, VENDOR_IP, vendor_port, calls=6,
               transport=uas_t)
    uac = sipp("uac_call.xml", switch.workdir, CUSTOMER_IP, free_port(CUSTOMER_IP),
               f"127.0.0.1:{switch.sip_port}", calls=6, rate=50, timeout_s=5)
    ok = uac.wait() == 0 and uas.wait() == 0
    uac.stop()
    uas.stop()
    return ok and switch.api.get("/api/v1/stats")["answered"] == before + 6


@pytest.mark.both_backends
def test_calls_are_shared_by_call_id_and_each_is_handled_whole(switch: Softswitch) -> None:
    vendor_port = configure(switch)
    probes = len(all_cdrs(switch, 0))
    # The vendor hangs up: its BYE carries the B-leg's Call-ID, which the worker chose.
    run_pair(switch.workdir, switch, "uac_wait_bye.xml", "uas_hangup.xml", calls=30, rate=40,
             uas_hold=300, vendor_port=vendor_port)
    run_pair(switch.workdir, switch, "uac_call.xml", "uas_answer.xml", calls=30, rate=40,
             uac_hold=300, vendor_port=vendor_port)
    cdrs = all_cdrs(switch, probes + 60)
    assert len(cdrs) == probes + 60
    assert all(c["final_code"] == 200 for c in cdrs)
    assert sum(c["hangup_by"] == "callee" for c in cdrs) == 30
    for cdr in cdrs:  # both legs of a call on the worker that took its INVITE
        assert worker_of(cdr["call_id_out"]) == worker_of(cdr["call_id_in"])
    assert {worker_of(c["call_id_in"]) for c in cdrs} == {0, 1}

    status = switch.api.get("/api/v1/engine")
    assert status["malformed_frames"] == {}  # every frame between processes understood
    signalling = status["signalling"]
    assert signalling["workers"] == 2 and signalling["restarts"] == [0]
    dispatcher = signalling["dispatcher"]
    assert all(n > 0 for n in dispatcher["dispatched"]) and dispatcher["dropped"] == [0, 0]
    assert dispatcher["received"] == sum(dispatcher["dispatched"])
    stats = switch.api.get("/api/v1/stats")  # both workers' counters, added
    assert (stats["attempts"], stats["answered"], stats["active"]) == (len(cdrs),) * 2 + (0,)
    # Each signalling worker relays on its own slice of --media-ports (40000-49999).
    ranges = relay_port_ranges(switch)
    assert len(ranges) >= 2 and ranges[0][0] >= 40000 and ranges[-1][1] <= 49999
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
    media = switch.api.get("/api/v1/media")  # every worker's relays, numbered across
    assert [w["index"] for w in media["workers"]] == list(range(len(ranges)))
    assert sorted(w["ports"] for w in media["workers"]) == [f"{a}-{b}" for a, b in ranges]


@pytest.mark.parametrize(("uac_t", "uas_t", "gw_t"), [("t1", "u1", "udp"), ("u1", "t1", "tcp")])
def test_tcp_legs_go_through_worker_0(switch: Softswitch, uac_t: str, uas_t: str,
                                      gw_t: str) -> None:
    """Worker 0 holds every TCP connection; the calls are still shared, and the TCP side
    hangs up (its BYE over TCP reaches the worker that holds the call)."""
    vendor_port = configure(switch, gw_t)
    probes = len(all_cdrs(switch, 0))
    if uas_t == "t1":  # the vendor over TCP hangs up
        run_pair(switch.workdir, switch, "uac_wait_bye.xml", "uas_hangup.xml", calls=16,
                 rate=40, uas_hold=300, uac_transport=uac_t, uas_transport=uas_t,
                 vendor_port=vendor_port)
    else:  # the customer over TCP hangs up
        run_pair(switch.workdir, switch, "uac_call.xml", "uas_answer.xml", calls=16,
                 rate=40, uac_hold=300, uac_transport=uac_t, uas_transport=uas_t,
                 vendor_port=vendor_port)
    cdrs = all_cdrs(switch, probes + 16)[probes:]
    assert len(cdrs) == 16 and all(c["final_code"] == 200 for c in cdrs)
    assert {c["hangup_by"] for c in cdrs} == {"callee" if uas_t == "t1" else "caller"}
    assert {worker_of(c["call_id_in"]) for c in cdrs} == {0, 1}
    for cdr in cdrs:
        assert worker_of(cdr["call_id_out"]) == worker_of(cdr["call_id_in"])


def test_active_calls_of_every_worker_are_listed(switch: Softswitch) -> None:
    vendor_port = configure(switch)
    vendor = sipp("uas_answer.xml", switch.workdir, VENDOR_IP, vendor_port, calls=16)
    customer = sipp("uac_call.xml", switch.workdir, CUSTOMER_IP, free_port(CUSTOMER_IP),
                    f"127.0.0.1:{switch.sip_port}", calls=16, rate=40, hold_ms=3000)
    try:
        assert wait_until(lambda: len(switch.api.get("/api/v1/calls")["items"]) == 16,
                          timeout=5)
        calls = switch.api.get("/api/v1/calls")["items"]
        assert len({c["id"] for c in calls}) == 16  # numbers unique across workers
        assert {worker_of(c["call_id_in"]) for c in calls} == {0, 1}
        assert customer.wait() == 0 and vendor.wait() == 0
    finally:
        customer.stop()
        vendor.stop()
    assert switch.api.get("/api/v1/calls")["items"] == []


def test_a_worker_that_dies_is_started_again(switch: Softswitch) -> None:
    vendor_port = configure(switch)
    (pid,) = worker_pids(switch)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: switch.api.get("/api/v1/engine")["signalling"]["restarts"] == [1],
                      timeout=10)
    assert wait_until(lambda: worker_pids(switch) not in ([], [pid]), timeout=5)
    assert wait_until(lambda: _probe_calls(switch, vendor_port), timeout=15)
    probes = len(all_cdrs(switch, 0))
    run_pair(switch.workdir, switch, "uac_wait_bye.xml", "uas_hangup.xml", calls=20, rate=40,
             uas_hold=200, vendor_port=vendor_port)
    cdrs = all_cdrs(switch, probes + 20)
    assert len(cdrs) == probes + 20 and all(c["final_code"] == 200 for c in cdrs)
    assert {worker_of(c["call_id_in"]) for c in cdrs[probes:]} == {0, 1}


def test_a_graceful_stop_ends_every_workers_calls_with_a_cdr(tmp_path: Path) -> None:
    switch = Softswitch(tmp_path, extra_args=["--signalling-workers", "2"]).start()
    customer = vendor = None
    try:
        vendor_port = configure(switch)
        probes = len(all_cdrs(switch, 0))
        vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port, calls=16)
        customer = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                        f"127.0.0.1:{switch.sip_port}", calls=16, rate=40, hold_ms=20000)
        assert wait_until(lambda: len(switch.api.get("/api/v1/calls")["items"]) == 16,
                          timeout=5)
        workers = worker_pids(switch)
        started = time.monotonic()
        assert switch.stop() == 0, switch.log()[-3000:]
        assert time.monotonic() - started < 15
        assert wait_until(lambda: not any(_alive(pid) for pid in workers), timeout=5)
    finally:
        for peer in (customer, vendor):
            if peer is not None:
                peer.stop()
        switch.stop()
    conn = sqlite3.connect(switch.db_path)
    rows = conn.execute("SELECT final_code, termination_reason, call_id_in FROM cdrs "
                        "ORDER BY id").fetchall()[probes:]
    conn.close()
    assert len(rows) == 16
    assert all(code == 200 and reason == "shutdown" for code, reason, _ in rows), rows
    assert {worker_of(call_id) for _, _, call_id in rows} == {0, 1}


def _hold_calls(switch: Softswitch, vendor_port: int, calls: int) -> tuple[Any, Any]:
    vendor = sipp("uas_answer.xml", switch.workdir, VENDOR_IP, vendor_port, calls=calls)
    customer = sipp("uac_call.xml", switch.workdir, CUSTOMER_IP, free_port(CUSTOMER_IP),
                    f"127.0.0.1:{switch.sip_port}", calls=calls, rate=50, hold_ms=4000)
    return customer, vendor


@pytest.mark.parametrize("limited", ["mapping", "routing"])
def test_capacities_are_exact_across_workers(switch: Softswitch, limited: str) -> None:
    vendor_port = configure(switch)
    api = switch.api
    kind = "mapping-gateways" if limited == "mapping" else "routing-gateways"
    (gateway,) = api.get(f"/api/v1/{kind}")["items"]
    api.put(f"/api/v1/{kind}/{gateway['id']}", {**_writable(gateway), "capacity": 4})
    time.sleep(1.0)  # both workers reload within 0.2 s
    customer, vendor = _hold_calls(switch, vendor_port, 12)
    try:
        assert wait_until(lambda: api.get("/api/v1/stats")["attempts"] >= 12 + 6, timeout=5)
        time.sleep(0.5)
        calls = api.get("/api/v1/calls")["items"]
        assert len(calls) == 4
        (status,) = api.get("/api/v1/routing-gateways/status")["items"]
        assert status["current_calls"] == 4
        stats = api.get("/api/v1/stats")
        if limited == "mapping":
            assert stats["counters"]["rejected_capacity"] == 8
        # The 12 INVITEs spread over both workers, and both admitted or refused some.
        assert all(n > 0 for n in api.get("/api/v1/engine")["signalling"]["dispatcher"][
            "dispatched"])
    finally:
        customer.stop()
        vendor.stop()


def _writable(gateway: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in gateway.items()
            if k not in ("id", "created_at", "updated_at", "registration")}


def _token_for(worker: int, host: str) -> str:
    """A Call-ID (as rawsip writes it: token@host) that the dispatcher sends to worker."""
    return next(token for token in (secrets.token_hex(8) for _ in range(1000))
                if worker_of(f"{token}@{host}") == worker)


def _guess(sock: socket.socket, switch: Softswitch, worker: int, password: str) -> list[int]:
    """One new call from NATTED_IP landing on ``worker``: challenged, then answered with
    ``password``; the codes of the answer."""
    dst = ("127.0.0.1", switch.sip_port)
    port = int(sock.getsockname()[1])
    token = _token_for(worker, NATTED_IP)

    def invite(auth: str = "") -> list[bytes]:
        return _send(sock, request("INVITE", "127.0.0.1", switch.sip_port, NATTED_IP, port,
                                   user="100", from_user="gw1", extra=auth, call_id=token),
                     dst)

    challenge = invite()
    if status_codes(challenge) != [401]:
        return status_codes(challenge)
    realm_m, nonce_m = REALM_RE.search(challenge[0]), NONCE_RE.search(challenge[0])
    assert realm_m and nonce_m
    realm, nonce = realm_m.group(1).decode(), nonce_m.group(1).decode()
    uri = f"sip:100@127.0.0.1:{switch.sip_port}"
    response = response_digest("MD5", "gw1", realm, password, "INVITE", uri, nonce,
                               "00000001", "c0ffee", "auth")
    return status_codes(invite(
        f'Authorization: Digest username="gw1", realm="{realm}", nonce="{nonce}", '
        f'uri="{uri}", response="{response}", algorithm=MD5, qop=auth, nc=00000001, '
        f'cnonce="c0ffee"'))


def test_guesses_on_every_worker_count_toward_one_suspension(switch: Softswitch) -> None:
    vendor_and(switch, PASSWORD_GW, SS_AUTHENTICATION_MAX_RETRY=2)
    api = switch.api
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((NATTED_IP, 0))
        # Three wrong answers on three calls, on both workers: the third passes the
        # limit of 2, as it would on one worker.
        assert _guess(sock, switch, 0, "guess") == [401]
        assert _guess(sock, switch, 1, "guess") == [401]
        assert _guess(sock, switch, 0, "guess") == [403]
        (suspension,) = api.get("/api/v1/suspensions")["items"]
        assert (suspension["terminal"], suspension["source_ip"]) == ("gw1", NATTED_IP)
        assert suspension["failures"] == 3
        # Suspended on every worker: nothing back, whichever worker a call lands on
        # (the suspension was told once, by the third guess's 403).
        for worker in (1, 0):
            assert _guess(sock, switch, worker, "s3cret") == []
        assert security(switch)["suspended"]["authentication"] == 1
        assert security(switch)["rejected"]["suspended"] == 1
        assert security(switch)["dropped"]["suspended"] == 2
        status, _, _ = api.call("DELETE", f"/api/v1/suspensions/gw1?source_ip={NATTED_IP}")
        assert status == 200 and api.get("/api/v1/suspensions")["items"] == []
        for worker in (1, 0):  # lifted everywhere: the right password passes
            assert 401 not in _guess(sock, switch, worker, "s3cret")
            assert 403 not in _guess(sock, switch, worker, "s3cret")


@pytest.mark.both_backends
def test_every_worker_follows_the_registrations(switch: Softswitch, tmp_path: Path) -> None:
    vendor_port = setup_phones(switch, {"username": "1001"}, vendor=True)
    assert vendor_port is not None
    port = free_port(PHONE_IP)
    assert register(tmp_path, switch, "1001", port=port) == 0  # REGISTER: worker 0
    # Worker 1 follows within a write batch and a 0.2 s poll (docs/scaling.md).
    time.sleep(1.0)
    # Calls from the binding's address: recognised by every worker, no challenge.
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port, calls=16)
    caller = sipp("uac_call.xml", tmp_path, PHONE_IP, port, f"127.0.0.1:{switch.sip_port}",
                  service="00441234", calls=16, rate=20, hold_ms=200,
                  extra=["-key", "caller", "1001"])
    try:
        assert caller.wait() == 0, caller.output() + switch.log()[-3000:]
        assert vendor.wait() == 0
    finally:
        caller.stop()
        vendor.stop()
    # Calls to the phone, which answers at its registered contact, from both workers.
    phone = sipp("uas_answer.xml", tmp_path, PHONE_IP, port, calls=16)
    customer = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                    f"127.0.0.1:{switch.sip_port}", service="1001", calls=16, rate=20,
                    hold_ms=200)
    try:
        assert customer.wait() == 0, customer.output() + switch.log()[-3000:]
        assert phone.wait() == 0
    finally:
        customer.stop()
        phone.stop()
    cdrs = all_cdrs(switch, 32)
    outgoing = [c for c in cdrs if c["phone"] == "1001"]
    incoming = [c for c in cdrs if c["callee_phone"] == "1001"]
    assert len(outgoing) == len(incoming) == 16
    assert all(c["final_code"] == 200 for c in cdrs)
    for calls in (outgoing, incoming):
        assert {worker_of(c["call_id_in"]) for c in calls} == {0, 1}
    assert switch.api.get("/api/v1/security/stats")["challenged"] == {"phone": 1}


def test_every_worker_follows_the_registrations_of_mapping_gateways(
    switch: Softswitch, tmp_path: Path
) -> None:
    """A password-mode PBX trunk with SS_REPLY_UNAUTHORIZED Off registers (worker 0), then
    calls with callers' numbers in From from its registered address: every worker knows
    the address from the bindings in SQLite and challenges, so every call connects."""
    vendor_port = vendor_and(switch, PASSWORD_GW, SS_REPLY_UNAUTHORIZED="Off")
    port = free_port(NATTED_IP)
    assert register(tmp_path, switch, "gw1", src_ip=NATTED_IP, port=port,
                    password="s3cret") == 0
    time.sleep(1.0)  # worker 1 follows within a write batch and a 0.2 s poll
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port, calls=12)
    trunk = sipp("uac_pbx_trunk.xml", tmp_path, NATTED_IP, port,
                 f"127.0.0.1:{switch.sip_port}", calls=12, rate=20, hold_ms=100,
                 timeout_s=20, extra=["-au", "gw1", "-ap", "s3cret",
                                      "-key", "caller", "+4930555123"])
    try:
        assert trunk.wait() == 0, trunk.output() + switch.log()[-3000:]
        assert vendor.wait() == 0
    finally:
        trunk.stop()
        vendor.stop()
    cdrs = all_cdrs(switch, 12)
    assert all((c["mapping_gateway"], c["final_code"]) == ("natted", 200) for c in cdrs)
    assert {worker_of(c["call_id_in"]) for c in cdrs} == {0, 1}
    assert security(switch)["authenticated"] == {"gateway": 13}  # the REGISTER and 12 calls


def test_no_worker_shows_the_database_password_in_its_command_line(tmp_path: Path,
                                                                   pg_url: str) -> None:
    """Any user may read a process's command line: the workers get the database URL,
    password and all, another way."""
    secret = f"pw-{secrets.token_hex(8)}"
    parts = urlsplit(pg_url)
    with_password = parts._replace(
        netloc=f"{parts.username}:{secret}@{parts.hostname}:{parts.port}").geturl()
    switch = Softswitch(tmp_path, extra_args=["--signalling-workers", "2"],
                        db=with_password).start()
    try:
        (worker,) = worker_pids(switch)  # up: start() waits for every worker
        assert secret.encode() not in Path(f"/proc/{worker}/cmdline").read_bytes()
        relays = descendants(worker)
        assert relays and all(
            secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
            for pid in relays)
    finally:
        assert switch.stop() == 0


def test_a_stop_while_the_database_is_locked_loses_no_workers_cdr(tmp_path: Path) -> None:
    """Every worker's CDR writer waits out the lock, then saves what is left; worker 0
    waits for them all before it exits, and the next start applies every saved file."""
    switch = Softswitch(tmp_path, extra_args=["--signalling-workers", "2"]).start()
    operator = sqlite3.connect(switch.db_path, timeout=1, isolation_level=None)
    locked = False
    try:
        vendor_port = configure(switch)
        probes = _cdr_counts(switch.db_path)[0]
        operator.execute("BEGIN EXCLUSIVE")
        locked = True
        run_pair(tmp_path, switch, "uac_call.xml", "uas_answer.xml", calls=16, rate=40,
                 uac_hold=100, vendor_port=vendor_port)
        assert switch.stop(timeout=60) == 0, switch.log()[-3000:]
        saved = list(tmp_path.glob("var/softswitch.db.unwritten-*.jsonl"))
        assert len(saved) == 2, switch.log()[-3000:]  # one per worker
    finally:
        if locked:
            operator.execute("ROLLBACK")
        operator.close()
        switch.stop()
    again = Softswitch(tmp_path, sip_port=switch.sip_port,
                       extra_args=["--signalling-workers", "2"]).start()
    try:
        assert not any(path.exists() for path in saved)
        rows, distinct, active = _cdr_counts(switch.db_path)
        assert (rows - probes, distinct - probes, active) == (16, 16, 0)
    finally:
        assert again.stop() == 0
