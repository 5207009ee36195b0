"""NAT keep-alive pacing measured on the wire: 5,000 NAT bindings, batches, interval,
period, and the restart of an unfinished cycle."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from support import Softswitch, free_port, wait_until

from b2bua.storage import db, migrate, open_database, params_store

PHONES = 5000
PORTS = 10
# Linux values; Python's socket module does not export these two.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


@dataclass
class Receiver:
    """UDP sockets on 0.0.0.0 that note when each keep-alive arrives and for whom."""

    ports: list[int]
    arrivals: list[tuple[float, str, int]] = field(default_factory=list)
    socks: list[socket.socket] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        for port in self.ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind(("0.0.0.0", port))
            sock.settimeout(0.2)
            self.socks.append(sock)
            threading.Thread(target=self._read, args=(sock, port), daemon=True).start()

    def _read(self, sock: socket.socket, port: int) -> None:
        while not self.stop.is_set():
            try:
                data, anc, _flags, _addr = sock.recvmsg(64, socket.CMSG_SPACE(12))
            except TimeoutError:
                continue
            if data != b"HELLO":
                continue
            for level, kind, raw in anc:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    dst = socket.inet_ntoa(raw[8:12])
                    self.arrivals.append((time.monotonic(), dst, port))

    def close(self) -> None:
        self.stop.set()
        time.sleep(0.3)
        for sock in self.socks:
            sock.close()

    def bursts(self, since: float, until: float, gap: float = 0.15
               ) -> tuple[list[list[tuple[str, int]]], list[float]]:
        """Arrivals between two instants, split where the line goes quiet for ``gap``;
        the bursts and the instant each started."""
        rows = sorted(a for a in self.arrivals if since <= a[0] < until)
        out: list[list[tuple[str, int]]] = []
        starts: list[float] = []
        last = -1.0
        for at, host, port in rows:
            if at - last > gap:
                out.append([])
                starts.append(at)
            out[-1].append((host, port))
            last = at
        return out, starts


def _phones(ports: list[int]) -> list[tuple[str, int]]:
    hosts = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(PHONES // PORTS)]
    return [(host, port) for host in hosts for port in ports]


def test_keepalive_batches_interval_and_restart(tmp_path: Path) -> None:
    ports = [free_port("0.0.0.0", socket.SOCK_DGRAM) for _ in range(PORTS)]
    path = tmp_path / "var" / "softswitch.db"
    with open_database(path) as database:
        migrate.migrate(database)
    conn = db.connect(path)
    now = time.time()
    conn.executemany(
        "INSERT INTO registrations (username, contact, transport, source_host, source_port, "
        "nat, expires_at, registered_at, user_agent, call_id) "
        "VALUES (?, ?, 'udp', ?, ?, 1, ?, ?, 'bulk', ?)",
        [(f"p{i}", f"sip:p{i}@10.1.{i // 250}.{i % 250}:5060", host, port, now + 3600, now,
          f"c{i}") for i, (host, port) in enumerate(_phones(ports))],
    )
    for name, value in (("SS_SIP_NAT_KEEP_ALIVE_PERIOD", 10),
                        ("SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME", 1000),
                        ("SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL", 300)):
        with open_database(path) as database:
            params_store.set_value(database, name, value)
    conn.close()
    receiver = Receiver(ports)
    receiver.start()
    switch = Softswitch(tmp_path).start()
    try:
        api = switch.api
        assert wait_until(lambda: api.get("/api/v1/keepalive")["completed"] >= 2, timeout=15)
        time.sleep(0.3)
        t0 = min(a[0] for a in receiver.arrivals)
        # Cycle 1: 5 batches of 1,000 phones, 300 ms apart; cycle 2 starts 10 s later.
        cycle1, starts = receiver.bursts(t0, t0 + 5)
        assert [len(b) for b in cycle1] == [1000] * 5, (starts, api.get("/api/v1/keepalive"))
        gaps = [b - a for a, b in pairwise(starts)]
        assert all(0.25 <= g <= 0.45 for g in gaps), gaps
        assert {p for b in cycle1 for p in b} == set(_phones(ports))
        cycle2, starts2 = receiver.bursts(t0 + 5, t0 + 12)
        assert 9.7 <= starts2[0] - t0 <= 10.5
        assert [len(b) for b in cycle2] == [1000] * 5
        # An unfinished cycle: 500 per batch, 2 s apart, needs 18 s > the 10 s period.
        api.put("/api/v1/parameters/SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME", {"value": 500})
        api.put("/api/v1/parameters/SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL", {"value": 2000})
        assert wait_until(lambda: api.get("/api/v1/keepalive")["restarted"] >= 1, timeout=35)
        stats = api.get("/api/v1/keepalive")
        assert stats["missed_last_cycle"] == 2500 and stats["phones_last_cycle"] == PHONES
        assert wait_until(lambda: api.get("/api/v1/keepalive")["cycles"] >= 5, timeout=12)
        time.sleep(0.5)
    finally:
        assert switch.stop() == 0
        receiver.close()
    t3 = t0 + 20
    # Its 5 batches start at t3 + 0, 2 ... 8 s; the next cycle is due at t3 + 10, and may
    # begin a few ms early against t0 (the first arrival, not the schedule).
    restart_cycle, starts3 = receiver.bursts(t3 - 0.5, t3 + 9.5)
    assert [len(b) for b in restart_cycle] == [500] * 5
    gaps = [b - a for a, b in pairwise(starts3)]
    assert all(1.9 <= g <= 2.2 for g in gaps), gaps
    next_cycle, _ = receiver.bursts(t3 + 9.5, t3 + 10.8)
    # The next cycle starts again from the first phones, not where the last one stopped.
    assert next_cycle and set(next_cycle[0]) == set(restart_cycle[0])
