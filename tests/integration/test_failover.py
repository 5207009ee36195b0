"""Gateway failover with real vendors (sipp scenarios and a silent UDP vendor): which
vendors got the INVITE, in what order, what the caller heard, and the CDR attempts,
for every switching rule with its parameter On and Off."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sipcaller import CallResult, SilentVendor, place_call
from sippctl import CUSTOMER_IP, Sipp, sipp
from support import Softswitch, free_port, wait_until

VENDOR_IPS = ("127.0.0.3", "127.0.0.4", "127.0.0.5")


@dataclass
class Vendor:
    """One routing gateway and what answers on its address."""

    scenario: str | None  # None: a silent vendor
    keys: dict[str, str] = field(default_factory=dict)
    hold_ms: int = 0
    gateway: dict[str, Any] = field(default_factory=dict)
    reached: bool = True  # whether its scenario must be played to the end
    name: str = ""
    port: int = 0
    process: Sipp | None = None
    silent: SilentVendor | None = None


def run(tmp_path: Path, switch: Softswitch, vendors: list[Vendor], *,
        params: dict[str, Any] | None = None, callee: str = "4420001",
        cancel_after: float | None = None) -> tuple[CallResult, dict[str, Any]]:
    api = switch.api
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    for i, vendor in enumerate(vendors):
        vendor.name = f"v{i + 1}"
        vendor.port = free_port(VENDOR_IPS[i])
        api.post("/api/v1/routing-gateways", {
            "name": vendor.name, "host": VENDOR_IPS[i], "port": vendor.port,
            "priority": i + 1, **vendor.gateway})
    for name, value in (params or {}).items():
        api.put(f"/api/v1/parameters/{name}", {"value": value})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == len(vendors)
                      and all(api.get("/api/v1/engine")["params"][n] == v
                              for n, v in (params or {}).items()), timeout=2)
    threads = []
    for i, vendor in enumerate(vendors):
        if vendor.scenario is None:
            vendor.silent = SilentVendor(VENDOR_IPS[i], vendor.port)
            thread = threading.Thread(target=vendor.silent.drain, args=(6.0,), daemon=True)
            thread.start()
            threads.append(thread)
            continue
        extra = [a for k, v in vendor.keys.items() for a in ("-key", k, v)]
        vendor.process = sipp(vendor.scenario, tmp_path, VENDOR_IPS[i], vendor.port,
                              hold_ms=vendor.hold_ms, timeout_s=20, extra=extra)
    try:
        result = place_call(CUSTOMER_IP, ("127.0.0.1", switch.sip_port), callee,
                            cancel_after=cancel_after)
        for vendor in vendors:
            if vendor.process is not None and vendor.reached:
                code = vendor.process.wait(30)
                assert code == 0, f"{vendor.name}: " + vendor.process.output() + \
                    switch.log()[-3000:]
    finally:
        for vendor in vendors:
            if vendor.process is not None:
                vendor.process.stop()
        for thread in threads:
            thread.join(10)
        for vendor in vendors:
            if vendor.silent is not None:
                vendor.silent.close()
    items = wait_until(lambda: api.get("/api/v1/cdrs")["items"], timeout=5)
    assert len(items) == 1
    detail: dict[str, Any] = api.get(f"/api/v1/cdrs/{items[0]['id']}")
    return result, detail


def attempts(detail: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    return [(a["routing_gateway"], a["outcome"], a["final_code"]) for a in detail["attempts"]]


def answered() -> Vendor:
    return Vendor("uas_answer.xml")


def unreached(scenario: str = "uas_answer.xml") -> Vendor:
    return Vendor(scenario, reached=False)


# -- INVITE timeout and the retransmission schedule --------------------------------------

def test_invite_timeout_switches_and_resends_on_schedule(tmp_path: Path,
                                                         softswitch: Softswitch) -> None:
    silent = Vendor(None, gateway={"invite_timeout": 2})
    result, detail = run(tmp_path, softswitch, [silent, answered()],
                         params={"SS_SIP_RESEND_INTERVAL": [0.25, 0.5, 1]})
    assert result.final == 200
    assert attempts(detail) == [("v1", "invite_timeout", None), ("v2", "answered", 200)]
    assert silent.silent is not None
    sent = silent.silent.invites()
    offsets = [round(t - sent[0], 2) for t in sent]
    # Sends at 0, 0.25, 0.75 and 1.75 s; the 2 s gateway timeout ends the attempt.
    assert len(offsets) == 4, offsets
    for got, want in zip(offsets, [0, 0.25, 0.75, 1.75], strict=True):
        assert abs(got - want) < 0.1, offsets
    assert detail["routing_gateway"] == "v2"


def test_invite_timeout_stops_switching_when_on(tmp_path: Path, softswitch: Softswitch) -> None:
    result, detail = run(
        tmp_path, softswitch, [Vendor(None), unreached()],
        params={"SS_SIP_TIMEOUT_INVITE": 1,
                "SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT": "On"})
    assert result.final == 408
    assert attempts(detail) == [("v1", "invite_timeout", None)]
    assert detail["termination_reason"] == "INVITE timeout"


def test_gateway_override_of_stop_after_invite_timeout(tmp_path: Path, softswitch: Softswitch
                                                       ) -> None:
    result, detail = run(
        tmp_path, softswitch,
        [Vendor(None, gateway={"stop_switch_after_invite_timeout": False}), answered()],
        params={"SS_SIP_TIMEOUT_INVITE": 1,
                "SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT": "On"})
    assert result.final == 200
    assert [a[0] for a in attempts(detail)] == ["v1", "v2"]


# -- trying / ringing / session progress timers ------------------------------------------

def test_trying_timeout_cancels_and_switches(tmp_path: Path, softswitch: Softswitch) -> None:
    result, detail = run(tmp_path, softswitch,
                         [Vendor("uas_trying_cancelled.xml", gateway={"trying_timeout": 1}),
                          answered()])
    assert result.final == 200
    assert attempts(detail) == [("v1", "trying_timeout", None), ("v2", "answered", 200)]


def test_ringing_timeout_switches_when_switching_after_ringing_is_allowed(
    tmp_path: Path, softswitch: Softswitch
) -> None:
    result, detail = run(tmp_path, softswitch,
                         [Vendor("uas_ring_cancelled.xml", gateway={"ringing_timeout": 1}),
                          answered()])
    assert result.final == 200 and 180 in result.provisional
    assert attempts(detail) == [("v1", "ringing_timeout", None), ("v2", "answered", 200)]


def test_ringing_commits_when_switching_after_ringing_is_off(tmp_path: Path,
                                                              softswitch: Softswitch) -> None:
    result, detail = run(tmp_path, softswitch,
                         [Vendor("uas_ring_cancelled.xml",
                                 gateway={"ringing_timeout": 1, "switch_after_ringing": False}),
                          unreached()])
    assert result.final == 408
    assert attempts(detail) == [("v1", "ringing_timeout", None)]
    assert detail["termination_reason"] == "ringing timeout"


@pytest.mark.parametrize(("scenario", "timer", "outcome"), [
    ("uas_183_cancelled.xml", "session_progress_timeout", "session_progress_timeout"),
    ("uas_183sdp_cancelled.xml", "session_progress_sdp_timeout",
     "session_progress_sdp_timeout"),
])
def test_session_progress_timers(tmp_path: Path, softswitch: Softswitch, scenario: str,
                                 timer: str, outcome: str) -> None:
    result, detail = run(tmp_path, softswitch,
                         [Vendor(scenario, gateway={timer: 1}), answered()],
                         params={"SS_SIP_STOP_SWITCH_AFTER_SDP": "Off"})
    assert result.final == 200
    assert attempts(detail) == [("v1", outcome, None), ("v2", "answered", 200)]


# -- SDP, busy, stop codes, until-connect ------------------------------------------------

def test_sdp_in_183_commits_when_on(tmp_path: Path, softswitch: Softswitch) -> None:
    result, detail = run(tmp_path, softswitch,
                         [Vendor("uas_183sdp_503.xml", hold_ms=300),
                          unreached()],
                         params={"SS_SIP_STOP_SWITCH_AFTER_SDP": "On"})
    assert (result.provisional, result.final) == ([100, 183], 503)
    assert attempts(detail) == [("v1", "failed", 503)]


def test_sdp_in_183_does_not_commit_when_off(tmp_path: Path, softswitch: Softswitch) -> None:
    result, detail = run(tmp_path, softswitch,
                         [Vendor("uas_183sdp_503.xml", hold_ms=300),
                          answered()],
                         params={"SS_SIP_STOP_SWITCH_AFTER_SDP": "Off"})
    assert result.final == 200
    assert attempts(detail) == [("v1", "failed", 503), ("v2", "answered", 200)]


@pytest.mark.parametrize(("switch_after_ringing", "final", "tried"),
                         [(True, 200, ["v1", "v2"]), (False, 503, ["v1"])])
def test_183_without_sdp_then_503(tmp_path: Path, softswitch: Softswitch,
                                  switch_after_ringing: bool, final: int, tried: list[str]
                                  ) -> None:
    result, detail = run(
        tmp_path, softswitch,
        [Vendor("uas_183_503.xml", hold_ms=300,
                gateway={"switch_after_ringing": switch_after_ringing}),
         answered() if final == 200 else unreached()])
    assert result.final == final
    assert [a[0] for a in attempts(detail)] == tried


@pytest.mark.parametrize(("busy_stops", "final", "tried"),
                         [("On", 486, ["v1"]), ("Off", 200, ["v1", "v2"])])
def test_busy(tmp_path: Path, softswitch: Softswitch, busy_stops: str, final: int,
              tried: list[str]) -> None:
    result, detail = run(
        tmp_path, softswitch,
        [Vendor("uas_reject_486.xml"),
         answered() if final == 200 else unreached()],
        params={"SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY": busy_stops})
    assert result.final == final
    assert [a[0] for a in attempts(detail)] == tried


@pytest.mark.parametrize(("codes", "final", "tried"),
                         [([480], 480, ["v1"]), ([], 200, ["v1", "v2"])])
def test_stop_switch_codes(tmp_path: Path, softswitch: Softswitch, codes: list[int],
                           final: int, tried: list[str]) -> None:
    result, detail = run(
        tmp_path, softswitch,
        [Vendor("uas_reject_480.xml", gateway={"stop_switch_codes": codes}),
         answered() if final == 200 else unreached()])
    assert result.final == final
    assert [a[0] for a in attempts(detail)] == tried


def test_until_connect_switches_past_sdp_and_busy(tmp_path: Path, softswitch: Softswitch
                                                  ) -> None:
    result, detail = run(
        tmp_path, softswitch,
        [Vendor("uas_183sdp_503.xml", hold_ms=200),
         Vendor("uas_reject_486.xml"), answered()],
        params={"SS_GATEWAY_SWITCH_UNTIL_CONNECT": "On", "SS_SIP_STOP_SWITCH_AFTER_SDP": "On",
                "SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY": "On"})
    assert result.final == 200
    assert attempts(detail) == [("v1", "failed", 503), ("v2", "failed", 486),
                                ("v3", "answered", 200)]


# -- limits, prefix mode, Retry-After, best final code -------------------------------------

@pytest.mark.parametrize(("limit", "final", "tried"),
                         [(1, 503, ["v1"]), (None, 200, ["v1", "v2"])])
def test_switch_limit(tmp_path: Path, softswitch: Softswitch, limit: int | None, final: int,
                      tried: list[str]) -> None:
    result, detail = run(
        tmp_path, softswitch,
        [Vendor("uas_reject_503.xml"),
         answered() if final == 200 else unreached()],
        params={"SS_GATEWAY_SWITCH_LIMIT": limit})
    assert result.final == final
    assert [a[0] for a in attempts(detail)] == tried


@pytest.mark.parametrize(("mode", "final", "tried"),
                         [("terminate", 503, ["v1"]), ("continue", 200, ["v1", "v2"])])
def test_prefix_mode(tmp_path: Path, softswitch: Softswitch, mode: str, final: int,
                     tried: list[str]) -> None:
    result, detail = run(
        tmp_path, softswitch,
        [Vendor("uas_reject_503.xml",
                gateway={"prefixes": ["4420"], "prefix_mode": mode}),
         Vendor("uas_answer.xml", gateway={"prefixes": ["44"]}, reached=final == 200)])
    assert result.final == final
    assert [a[0] for a in attempts(detail)] == tried


def test_retry_after_takes_a_vendor_out_of_routing(tmp_path: Path, softswitch: Softswitch
                                                   ) -> None:
    result, detail = run(tmp_path, softswitch,
                         [Vendor("uas_503_retry_after.xml", {"retry": "120"}), answered()])
    assert result.final == 200
    assert [a[0] for a in attempts(detail)] == ["v1", "v2"]
    status = {g["name"]: g
              for g in softswitch.api.get("/api/v1/routing-gateways/status")["items"]}
    until = status["v1"]["retry_after_until"]
    assert until is not None and 110 <= until - time.time() <= 121
    assert status["v2"]["retry_after_until"] is None
    # The next call skips v1 while it is out.
    second = sipp("uas_answer.xml", tmp_path, VENDOR_IPS[1],
                  softswitch.api.get("/api/v1/routing-gateways/2")["port"])
    try:
        again = place_call(CUSTOMER_IP, ("127.0.0.1", softswitch.sip_port), "4420001")
        assert again.final == 200 and second.wait(20) == 0
    finally:
        second.stop()
    cdrs = wait_until(lambda: len(softswitch.api.get("/api/v1/cdrs")["items"]) == 2)
    assert cdrs
    last = softswitch.api.get("/api/v1/cdrs")["items"][-1]
    assert [a[0] for a in attempts(softswitch.api.get(f"/api/v1/cdrs/{last['id']}"))] == ["v2"]


def test_most_meaningful_code_when_every_vendor_fails(tmp_path: Path, softswitch: Softswitch
                                                      ) -> None:
    result, detail = run(
        tmp_path, softswitch,
        [Vendor("uas_reject_503.xml"), Vendor("uas_reject_486.xml"),
         Vendor(None, gateway={"invite_timeout": 1})],
        params={"SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY": "Off"})
    assert result.final == 486
    assert attempts(detail) == [("v1", "failed", 503), ("v2", "failed", 486),
                                ("v3", "invite_timeout", None)]
    assert detail["termination_reason"] == "every routing gateway failed"


def test_a_challenge_or_redirect_from_every_vendor_reaches_the_caller_as_503(
        tmp_path: Path, softswitch: Softswitch) -> None:
    """A vendor's 407 or 302 is between the vendor and us: the caller gets 503, and the
    CDR's attempts keep the vendors' own codes."""
    result, detail = run(tmp_path, softswitch,
                         [Vendor("uas_reject_407.xml"), Vendor("uas_redirect_302.xml")])
    assert result.final == 503
    assert attempts(detail) == [("v1", "failed", 407), ("v2", "failed", 302)]
    assert detail["termination_reason"] == "every routing gateway failed"


# -- races -------------------------------------------------------------------------------

def test_answer_racing_a_timer_is_acked_and_hung_up(tmp_path: Path, softswitch: Softswitch
                                                    ) -> None:
    # v1 rings, the 1 s ringing timer CANCELs it, v1 answers anyway 1.5 s later: the
    # softswitch must ACK and BYE that answer (v1's scenario checks both) while the
    # caller is connected through v2.
    result, detail = run(tmp_path, softswitch,
                         [Vendor("uas_answer_despite_cancel.xml", hold_ms=1500,
                                 gateway={"ringing_timeout": 1}),
                          Vendor("uas_ring_answer.xml", hold_ms=2500)])
    assert result.final == 200
    assert [(a[0], a[1]) for a in attempts(detail)] == [("v1", "ringing_timeout"),
                                                        ("v2", "answered")]
    assert softswitch.api.get("/api/v1/routing-gateways/status")["items"][0][
        "current_calls"] == 0


def test_caller_cancel_during_an_attempt(tmp_path: Path, softswitch: Softswitch) -> None:
    result, detail = run(tmp_path, softswitch,
                         [Vendor("uas_ring_cancelled.xml"), unreached()], cancel_after=0.5)
    assert result.final == 487
    assert attempts(detail) == [("v1", "cancelled", None)]
    assert detail["hangup_by"] == "caller"


@pytest.mark.parametrize(("rtp_stops", "final", "tried"),
                         [("On", 503, ["v1"]), ("Off", 200, ["v1", "v2"])])
def test_rtp_start_commits_when_on(tmp_path: Path, softswitch: Softswitch, rtp_stops: str,
                                   final: int, tried: list[str]) -> None:
    """v1: 183 with SDP and early RTP, then 503. SDP alone does not commit (Off here);
    the RTP from v1 through the relay does when the parameter is On."""
    from rtppeer import EarlyMediaVendor, RtpEndpoint

    api = softswitch.api
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    v1_port, v2_port = free_port(VENDOR_IPS[0]), free_port(VENDOR_IPS[1])
    api.post("/api/v1/routing-gateways", {"name": "v1", "host": VENDOR_IPS[0],
                                          "port": v1_port, "priority": 1})
    api.post("/api/v1/routing-gateways", {"name": "v2", "host": VENDOR_IPS[1],
                                          "port": v2_port, "priority": 2})
    for name, value in (("SS_MEDIAPROXYMODE", "On"), ("SS_SIP_STOP_SWITCH_AFTER_SDP", "Off"),
                        ("SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START", rtp_stops)):
        api.put(f"/api/v1/parameters/{name}", {"value": value})
    assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == 2, timeout=2)
    media = RtpEndpoint(VENDOR_IPS[0])
    v1 = EarlyMediaVendor(VENDOR_IPS[0], v1_port, media)
    v2 = sipp("uas_answer.xml", tmp_path, VENDOR_IPS[1], v2_port)
    try:
        result = place_call(CUSTOMER_IP, ("127.0.0.1", softswitch.sip_port), "4420001")
        if final == 200:
            assert v2.wait(20) == 0
    finally:
        v2.stop()
        v1.close()
        media.close()
    assert result.final == final
    items = wait_until(lambda: api.get("/api/v1/cdrs")["items"], timeout=5)
    detail = api.get(f"/api/v1/cdrs/{items[0]['id']}")
    assert [a[0] for a in attempts(detail)] == tried
