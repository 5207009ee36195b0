"""Floods from many distinct sources: known trunks keep working, memory stays bounded."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from rawsip import request
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until

SOURCES = 4000  # distinct source addresses in 127.1.0.0/16
ROUNDS = 3


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _flood(switch_port: int, stop: threading.Event, sent: list[int]) -> None:
    """REGISTERs and INVITEs from SOURCES addresses, ROUNDS times, bounded in count."""
    sockets = []
    try:
        for i in range(SOURCES):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((f"127.1.{i // 250}.{1 + i % 250}", 0))
            sockets.append(sock)
        for rnd in range(ROUNDS):
            for i, sock in enumerate(sockets):
                if stop.is_set():
                    return
                ip, port = sock.getsockname()
                method = "REGISTER" if (i + rnd) % 2 else "INVITE"
                sock.sendto(request(method, "127.0.0.1", switch_port, ip, port,
                                    user=f"{1000 + i}", from_user=f"{1000 + i}"),
                            ("127.0.0.1", switch_port))
                sent[0] += 1
                if i % 200 == 0:
                    time.sleep(0.01)  # paced so loopback buffers are not the bottleneck
    finally:
        for sock in sockets:
            sock.close()


def test_flood_from_distinct_sources_leaves_trunks_working(tmp_path: Path,
                                                           softswitch: Softswitch) -> None:
    api = softswitch.api
    vendor_port = free_port(VENDOR_IP)
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                          "port": vendor_port})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, timeout=2)
    assert softswitch.proc is not None
    rss_before = _rss_kib(softswitch.proc.pid)
    stop = threading.Event()
    sent = [0]
    flood = threading.Thread(target=_flood, args=(softswitch.sip_port, stop, sent),
                             daemon=True)
    flood.start()
    try:
        time.sleep(0.5)
        vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port)
        caller = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                      f"127.0.0.1:{softswitch.sip_port}", hold_ms=500)
        assert caller.wait(30) == 0, caller.output()
        assert vendor.wait(30) == 0
    finally:
        flood.join(60)
        stop.set()
    assert sent[0] == SOURCES * ROUNDS
    stats = api.get("/api/v1/security/stats")
    # On (default): unknown requests are challenged alike; all state bounded.
    assert stats["challenged"]["unknown"] > 0
    assert stats["auth_sessions"] <= 50_000
    # A challenge is how every password-mode call starts: counted, not logged.
    assert stats["log_lines_suppressed"] == 0
    rss_after = _rss_kib(softswitch.proc.pid)
    # Thousands of sources cost well under the documented worst case (60 MB).
    assert rss_after - rss_before < 60 * 1024, (rss_before, rss_after)
    (cdr,) = api.get("/api/v1/cdrs")["items"]
    assert cdr["final_code"] == 200
