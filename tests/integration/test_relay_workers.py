"""Relay workers: media relayed by one process per core, calls spread across them, a
worker that dies is restarted, and admission control refuses new calls while every
relay worker is behind (SS_OVERLOAD_LOOP_LAG)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rtppeer import AnsweringVendor, RtpEndpoint, media_address, payload_of, sdp
from sipcaller import place_call
from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, ip_trunks, wait_until

PACKETS = 40


def _start(tmp_path: Path, workers: int) -> Softswitch:
    switch = Softswitch(tmp_path, extra_args=["--media-workers", str(workers)]).start()
    api = switch.api
    api.put("/api/v1/parameters/SS_MEDIAPROXYMODE", {"value": "On"})
    return switch


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Softswitch]:
    switch = _start(tmp_path, 2)
    try:
        yield switch
    finally:
        code = switch.stop()
        assert code == 0, f"softswitch exit code {code}\n{switch.log()[-3000:]}"


def _workers(switch: Softswitch) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = switch.api.get("/api/v1/media")["workers"]
    return workers


def _slice(ports: str) -> range:
    low, high = (int(p) for p in ports.split("-"))
    return range(low, high + 1)


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _relayed_call(switch: Softswitch, vendor: AnsweringVendor, caller_rtp: RtpEndpoint,
                  vendor_rtp: RtpEndpoint) -> None:
    def media(answer_sdp: str) -> None:
        caller_rtp.send(media_address(answer_sdp), PACKETS)
        vendor_rtp.send(vendor.offered(), PACKETS, first_seq=1001)

    result = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), "4420001",
                        offer=sdp(CUSTOMER_IP, caller_rtp.port), on_answer=media, hold=0.6)
    assert result.final == 200


def test_sessions_spread_over_worker_processes(tmp_path: Path, two_workers: Softswitch
                                               ) -> None:
    switch = two_workers
    vendor_port = free_port(VENDOR_IP)
    ip_trunks(switch, CUSTOMER_IP, VENDOR_IP, vendor_port)
    workers = _workers(switch)
    assert len(workers) == 2 and all(w["alive"] for w in workers)
    assert switch.proc is not None
    assert {w["pid"] for w in workers} <= _children(switch.proc.pid)
    slices = [_slice(w["ports"]) for w in workers]
    assert not set(slices[0]) & set(slices[1])

    calls = 10
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, vendor_port, calls=calls)
    customer = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                    f"127.0.0.1:{switch.sip_port}", calls=calls, rate=50, hold_ms=2000)
    try:
        # While the calls are up, each worker holds about half of them.
        busy = wait_until(lambda: [w["sessions"] for w in _workers(switch)]
                          if sum(w["sessions"] for w in _workers(switch)) == calls else None,
                          timeout=5)
        assert busy and min(busy) >= calls // 2 - 1, busy
        assert customer.wait() == 0, customer.output() + switch.log()[-3000:]
        assert vendor.wait() == 0, vendor.output()
    finally:
        customer.stop()
        vendor.stop()
    items = wait_until(lambda: (lambda r: r if len(r) == calls else None)(
        switch.api.get("/api/v1/cdrs")["items"]), timeout=5)
    assert items
    used = [0, 0]
    for row in items:
        media = json.loads(row["media"])
        assert media["relayed"]
        a_port, b_port = media["ports"]
        owner = [i for i, s in enumerate(slices) if a_port in s and b_port in s]
        assert len(owner) == 1, (media["ports"], slices)
        used[owner[0]] += 1
    assert min(used) >= calls // 2 - 1, used
    assert wait_until(lambda: switch.api.get("/api/v1/media")["ports_in_use"] == 0, timeout=5)


@pytest.mark.parametrize("workers", [0, 2])
def test_audio_and_final_counters_with_and_without_workers(tmp_path: Path, workers: int
                                                           ) -> None:
    switch = _start(tmp_path, workers)
    caller_rtp, vendor_rtp = RtpEndpoint(CUSTOMER_IP), RtpEndpoint(VENDOR_IP)
    vendor_port = free_port(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp)
    try:
        ip_trunks(switch, CUSTOMER_IP, VENDOR_IP, vendor_port)
        _relayed_call(switch, vendor, caller_rtp, vendor_rtp)
        assert wait_until(lambda: len(vendor_rtp.payloads()) == PACKETS, timeout=3)
        assert vendor_rtp.payloads() == [payload_of(i) for i in range(1, PACKETS + 1)]
        assert wait_until(lambda: len(caller_rtp.payloads()) == PACKETS, timeout=3)
        rows = wait_until(lambda: switch.api.get("/api/v1/cdrs")["items"], timeout=5)
        media = json.loads(rows[-1]["media"])
        # The CDR carries the relay's final counters, also from a worker process.
        assert media["caller_to_callee_packets"] == PACKETS
        assert media["callee_to_caller_packets"] == PACKETS
        status = switch.api.get("/api/v1/media")
        assert len(status["workers"]) == workers
        assert status["totals"]["none"]["packets"] == 2 * PACKETS
        metrics = switch.api.get("/api/v1/metrics")
        assert f'softswitch_relay_packets_total{{cipher="none"}} {2 * PACKETS}' in metrics
        assert "softswitch_engine_loop_lag_seconds " in metrics
    finally:
        vendor.close()
        caller_rtp.close()
        vendor_rtp.close()
        assert switch.stop() == 0, switch.log()[-3000:]


def test_killed_worker_is_restarted_and_calls_go_on(tmp_path: Path, two_workers: Softswitch
                                                    ) -> None:
    switch = two_workers
    caller_rtp, vendor_rtp = RtpEndpoint(CUSTOMER_IP), RtpEndpoint(VENDOR_IP)
    vendor_port = free_port(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp)
    try:
        ip_trunks(switch, CUSTOMER_IP, VENDOR_IP, vendor_port)
        victim = _workers(switch)[0]
        os.kill(victim["pid"], signal.SIGKILL)
        restarted = wait_until(
            lambda: [w for w in _workers(switch) if w["index"] == victim["index"]
                     and w["alive"] and w["starts"] == 2], timeout=5)
        assert restarted and restarted[0]["pid"] != victim["pid"]
        for _ in range(3):  # whichever worker each lands on, audio flows
            before = len(vendor_rtp.payloads())
            _relayed_call(switch, vendor, caller_rtp, vendor_rtp)
            assert wait_until(lambda b=before: len(vendor_rtp.payloads()) == b + PACKETS,
                              timeout=3)
        assert 'softswitch_relay_worker_starts_total{worker="0"} 2' in \
            switch.api.get("/api/v1/metrics")
    finally:
        vendor.close()
        caller_rtp.close()
        vendor_rtp.close()


def test_engine_killed_takes_its_workers_with_it(tmp_path: Path) -> None:
    switch = _start(tmp_path, 2)
    pids = [w["pid"] for w in _workers(switch)]
    switch.stop(signal.SIGKILL)

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists()
                       and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
                       for pid in pids)

    assert wait_until(gone, timeout=5), "relay workers outlived the engine"
    # The same ports are free for the restarted softswitch.
    again = Softswitch(tmp_path, sip_port=switch.sip_port,
                       extra_args=["--media-workers", "2"]).start()
    try:
        assert all(w["alive"] for w in _workers(again))
    finally:
        assert again.stop() == 0


def test_new_calls_refused_while_every_relay_worker_is_behind(tmp_path: Path,
                                                             two_workers: Softswitch) -> None:
    switch = two_workers
    vendor_port = free_port(VENDOR_IP)
    vendor_rtp = RtpEndpoint(VENDOR_IP)
    vendor = AnsweringVendor(VENDOR_IP, vendor_port, vendor_rtp)
    workers = _workers(switch)
    try:
        ip_trunks(switch, CUSTOMER_IP, VENDOR_IP, vendor_port)
        switch.api.put("/api/v1/parameters/SS_OVERLOAD_LOOP_LAG", {"value": 300})
        for w in workers:
            os.kill(w["pid"], signal.SIGSTOP)  # a worker that cannot keep up at all
        try:
            assert wait_until(lambda: all(w["loop_lag_ms"] >= 300 for w in _workers(switch)),
                              timeout=5)
            refused = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), "4420001")
            assert refused.final == 503
            assert refused.header("Retry-After") == "2"
            stats = switch.api.get("/api/v1/stats")["counters"]
            assert stats["rejected_overload"] == 1
        finally:
            for w in workers:
                os.kill(w["pid"], signal.SIGCONT)
        switch.api.put("/api/v1/parameters/SS_OVERLOAD_LOOP_LAG", {"value": 300})
        assert wait_until(lambda: all(w["loop_lag_ms"] < 300 for w in _workers(switch)),
                          timeout=5)
        answered = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), "4420001")
        assert answered.final == 200
        assert switch.api.get("/api/v1/stats")["counters"]["rejected_overload"] == 1
    finally:
        vendor.close()
        vendor_rtp.close()
