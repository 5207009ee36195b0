"""Carrier controls with real sipp peers (docs/carrier-controls.md): a customer's call
rate measured at the vendor, a vendor's call rate with the rest going to the next
vendor, a call cut at its maximum duration, a 70/30 weighted split, the routing period in
force at a boundary, and a mapped failure code seen by the caller."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sippctl import CUSTOMER_IP, VENDOR_IP, Sipp, sipp
from support import Softswitch, free_port, wait_until
from test_basic_calls import cdrs
from test_operator_script import cli


def incoming(vendor: Sipp) -> int:
    """The INVITEs a vendor sipp received, from its statistics file (written each
    second with -fd 1)."""
    with open(vendor.workdir / "stats.csv", newline="") as stats:
        rows = list(csv.DictReader(stats, delimiter=";"))
    return int(rows[-1]["IncomingCall(C)"]) if rows else 0


def vendor_sipp(tmp_path: Path, label: str, port: int, scenario: str = "uas_answer.xml"
                ) -> Sipp:
    (tmp_path / label).mkdir()
    return sipp(scenario, tmp_path / label, VENDOR_IP, port, calls=100_000, timeout_s=120,
                extra=["-fd", "1"])


def settle(vendor: Sipp, expected: int | None = None) -> int:
    """The vendor's count once its statistics stop moving."""
    last = -1
    for _ in range(20):
        time.sleep(1.2)
        now = incoming(vendor)
        if now == last and (expected is None or now >= expected):
            return now
        last = now
    return last


def gateways(switch: Softswitch, mapping: dict[str, Any],
             *vendors: dict[str, Any]) -> None:
    api = switch.api
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP], **mapping})
    for vendor in vendors:
        api.post("/api/v1/routing-gateways", {"host": VENDOR_IP, **vendor})
    assert wait_until(lambda: switch.api.get("/api/v1/engine")["routing_gateways"]
                      == len(vendors), timeout=2)


def customer(tmp_path: Path, switch: Softswitch, scenario: str, calls: int, rate: float,
             hold_ms: int = 0, timeout_s: int = 90) -> Sipp:
    (tmp_path / "customer").mkdir(exist_ok=True)
    return sipp(scenario, tmp_path / "customer", CUSTOMER_IP, free_port(CUSTOMER_IP),
                f"127.0.0.1:{switch.sip_port}", calls=calls, rate=rate, hold_ms=hold_ms,
                timeout_s=timeout_s)


def test_a_customer_at_10_calls_per_second_offered_20(tmp_path: Path,
                                                      softswitch: Softswitch) -> None:
    """600 calls at 20 calls/s over 30 s: the vendor gets the rate (10/s) and the burst
    (10), the rest are refused with 503 and a Retry-After."""
    port = free_port(VENDOR_IP)
    gateways(softswitch, {"call_rate": 10}, {"name": "vendor", "port": port})
    vendor = vendor_sipp(tmp_path, "vendor", port)
    try:
        started = time.monotonic()
        offer = customer(tmp_path, softswitch, "uac_call_or_refused.xml", 600, 20)
        assert offer.wait(90) == 0, offer.output()
        offered_for = time.monotonic() - started
        reached = settle(vendor)
    finally:
        vendor.stop()
    # GCRA: the burst at once, then one call each 100 ms of the offering.
    assert offered_for >= 29
    assert 300 <= reached <= 311, (reached, offered_for)
    stats = softswitch.api.get("/api/v1/stats")["counters"]
    assert stats["rejected_rate"] == 600 - reached
    answered = [c for c in cdrs(softswitch, reached) if c["final_code"] == 200]
    assert len(answered) == reached  # refusals over the rate have no CDR, as at capacity


def test_a_vendor_at_its_rate_is_skipped_for_the_next(tmp_path: Path,
                                                      softswitch: Softswitch) -> None:
    """A vendor limited to 5 calls/s (burst 5) offered 10/s for 10 s gets at most 5/s;
    the others go to the next vendor, and their CDRs say the first was at its rate."""
    limited, spare = free_port(VENDOR_IP), free_port(VENDOR_IP)
    gateways(softswitch, {},
             {"name": "limited", "port": limited, "priority": 0, "call_rate": 5,
              "call_rate_burst": 5},
             {"name": "spare", "port": spare, "priority": 1})
    vendors = [vendor_sipp(tmp_path, "limited", limited), vendor_sipp(tmp_path, "spare", spare)]
    try:
        started = time.monotonic()
        offer = customer(tmp_path, softswitch, "uac_call.xml", 100, 10)
        assert offer.wait(60) == 0, offer.output()
        offered_for = time.monotonic() - started
        got = [settle(vendors[0]), settle(vendors[1])]
    finally:
        for vendor in vendors:
            vendor.stop()
    assert got[0] <= 5 * offered_for + 5, (got, offered_for)
    assert got[0] >= 5 * (offered_for - 2), (got, offered_for)
    assert sum(got) == 100
    calls = cdrs(softswitch, 100)
    assert all(c["final_code"] == 200 for c in calls)
    to_spare = [c for c in calls if c["routing_gateway"] == "spare"]
    assert len(to_spare) == got[1]
    detail = softswitch.api.get(f"/api/v1/cdrs/{to_spare[-1]['id']}")
    first = detail["attempts"][0]
    assert (first["routing_gateway"], first["outcome"], first["call_id"]) == (
        "limited", "rate_limited", None)
    stats = softswitch.api.get("/api/v1/stats")["counters"]
    assert stats["vendor_rate_limited"] == got[1]


def test_a_call_is_cut_at_its_maximum_duration(tmp_path: Path,
                                               softswitch: Softswitch) -> None:
    """Both legs get a BYE at the mapping gateway's 2 s: both sipp peers wait for it."""
    port = free_port(VENDOR_IP)
    gateways(softswitch, {"max_duration": 2}, {"name": "vendor", "port": port})
    (tmp_path / "vendor").mkdir()
    vendor = sipp("uas_answer.xml", tmp_path / "vendor", VENDOR_IP, port)
    caller = customer(tmp_path, softswitch, "uac_wait_bye.xml", 1, 1, timeout_s=20)
    try:
        assert caller.wait(30) == 0, caller.output()
        assert vendor.wait(30) == 0, vendor.output()
    finally:
        vendor.stop()
    (cdr,) = cdrs(softswitch, 1)
    assert (cdr["hangup_by"], cdr["termination_reason"]) == ("system", "maximum duration")
    assert 2.0 <= cdr["duration"] < 2.5


def test_a_thousand_calls_split_70_30(tmp_path: Path, softswitch: Softswitch) -> None:
    seventy, thirty = free_port(VENDOR_IP), free_port(VENDOR_IP)
    gateways(softswitch, {}, {"name": "seventy", "port": seventy},
             {"name": "thirty", "port": thirty})
    # The operator's way: the CLI, through the API (live within a second).
    cli(softswitch, "gw", "set", "routing", "seventy", "weight=70")
    cli(softswitch, "gw", "set", "routing", "thirty", "weight=30")
    assert wait_until(lambda: [v["reason"] for v in softswitch.api.post(
        "/api/v1/routing/test", {"caller": "1001", "callee": "200",
                                 "mapping_gateway": "customer"})["gateways"]
        if "weighted turn" in v["detail"]] == ["route"], timeout=2)
    vendors = [vendor_sipp(tmp_path, "seventy", seventy),
               vendor_sipp(tmp_path, "thirty", thirty)]
    try:
        offer = customer(tmp_path, softswitch, "uac_call.xml", 1000, 250)
        assert offer.wait(60) == 0, offer.output()
        got = [settle(vendors[0]), settle(vendors[1], 1000 - incoming(vendors[0]))]
    finally:
        for vendor in vendors:
            vendor.stop()
    assert sum(got) == 1000
    assert abs(got[0] - 700) <= 10, got  # within 1% of the calls


def test_the_period_in_force_when_the_call_starts(tmp_path: Path,
                                                  softswitch: Softswitch) -> None:
    """A vendor taken out by a period that begins 3 s from now: a call before the
    boundary goes to it, a call after goes to the next vendor."""
    softswitch.api.put("/api/v1/parameters/SS_ROUTING_TIME_ZONE", {"value": "UTC"})
    boundary = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    if boundary.date() != (boundary + timedelta(seconds=5)).date():
        time.sleep(10)  # not across midnight: a period is within one day
        boundary = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[boundary.weekday()]
    first, second = free_port(VENDOR_IP), free_port(VENDOR_IP)
    gateways(softswitch, {},
             {"name": "daytime", "port": first, "priority": 0,
              "periods": [{"days": [day], "begin": boundary.strftime("%H:%M:%S"),
                           "end": "24:00", "enabled": False}]},
             {"name": "evening", "port": second, "priority": 1})
    vendors = [vendor_sipp(tmp_path, "daytime", first), vendor_sipp(tmp_path, "evening", second)]
    try:
        before = customer(tmp_path, softswitch, "uac_call.xml", 1, 1)
        assert before.wait(20) == 0, before.output()
        assert datetime.now(UTC) < boundary, "the first call ended after the boundary"
        time.sleep(max(0.0, (boundary - datetime.now(UTC)).total_seconds()) + 0.3)
        (tmp_path / "customer2").mkdir()
        after = sipp("uac_call.xml", tmp_path / "customer2", CUSTOMER_IP,
                     free_port(CUSTOMER_IP), f"127.0.0.1:{softswitch.sip_port}")
        assert after.wait(20) == 0, after.output()
    finally:
        for vendor in vendors:
            vendor.stop()
    calls = sorted(cdrs(softswitch, 2), key=lambda c: c["start_at"])
    assert [c["routing_gateway"] for c in calls] == ["daytime", "evening"]
    dry = softswitch.api.post("/api/v1/routing/test", {"caller": "1001", "callee": "200",
                                                       "mapping_gateway": "customer"})
    assert [v["name"] for v in dry["route"]] == ["evening"], dry


def test_a_mapped_failure_code_is_what_the_caller_hears(tmp_path: Path,
                                                        softswitch: Softswitch) -> None:
    port = free_port(VENDOR_IP)
    gateways(softswitch, {}, {"name": "vendor", "port": port})
    cli(softswitch, "gw", "set", "mapping", "customer", 'failure_codes={"5xx": 480}')
    time.sleep(1.0)  # the reload
    (tmp_path / "vendor").mkdir()
    vendor = sipp("uas_reject_503.xml", tmp_path / "vendor", VENDOR_IP, port)
    caller = customer(tmp_path, softswitch, "uac_expect_480.xml", 1, 1)
    try:
        assert caller.wait(20) == 0, caller.output()
        assert vendor.wait(20) == 0, vendor.output()
    finally:
        vendor.stop()
    (cdr,) = cdrs(softswitch, 1)
    assert (cdr["final_code"], cdr["caller_code"]) == (503, 480)
