"""The gateway switching rules (VOS3000's), as pure decisions over one attempt's events.

``docs/failover.md`` has the decision table; this module is its implementation:

* no response at all within the INVITE timeout: next gateway, or 408 to the caller when
  stop-switch-after-INVITE-timeout is On;
* 100 starts the trying timer, 183 the session-progress timer (the SDP one when it
  carries SDP), 180 the ringing timer; an expiry cancels the attempt and switches,
  unless the call is committed to this gateway (then the caller gets 408);
* commit: SDP in a provisional with stop-after-SDP On; RTP from the gateway with
  stop-after-RTP-start On; any 18x when the gateway does not allow switching after
  ringing;
* a final failure: a code in the gateway's stop-switch codes ends the call with it;
  486 ends it with stop-after-busy On; a committed call ends with the vendor's code;
  anything else switches;
* switch-until-connect On overrides every commit and the busy rule (not the gateway's
  explicit stop codes): keep switching until a 200.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from b2bua.config.live import Params
from b2bua.routing.gateways import RoutingGateway


class Timer(Enum):
    TRYING = "trying_timeout"
    SESSION_PROGRESS = "session_progress_timeout"
    SESSION_PROGRESS_SDP = "session_progress_sdp_timeout"
    RINGING = "ringing_timeout"


class Next(Enum):
    SWITCH = "switch"  # try the next gateway
    END = "end"  # the caller gets a final response now


@dataclass(frozen=True, slots=True)
class SwitchRules:
    """The rules for one attempt, per-gateway overrides applied to the system values."""

    invite_timeout: float
    timers: dict[Timer, float]
    stop_after_invite_timeout: bool
    stop_after_sdp: bool
    stop_after_rtp: bool
    stop_after_busy: bool
    switch_after_ringing: bool
    stop_codes: frozenset[int]
    until_connect: bool

    @classmethod
    def resolve(cls, params: Params, gw: RoutingGateway | None) -> SwitchRules:
        def seconds(field: str, name: str) -> float:
            own = getattr(gw, field, 0) if gw is not None else 0
            return float(own or params.integer(name))

        def flag(field: str, name: str) -> bool:
            own = getattr(gw, field, None) if gw is not None else None
            return params.flag(name) if own is None else bool(own)

        return cls(
            invite_timeout=seconds("invite_timeout", "SS_SIP_TIMEOUT_INVITE"),
            timers={
                Timer.TRYING: seconds("trying_timeout", "SS_SIP_TIMEOUT_TRYING"),
                Timer.SESSION_PROGRESS: seconds("session_progress_timeout",
                                                "SS_SIP_TIMEOUT_SESSION_PROGRESS"),
                Timer.SESSION_PROGRESS_SDP: seconds("session_progress_sdp_timeout",
                                                    "SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP"),
                Timer.RINGING: seconds("ringing_timeout", "SS_SIP_TIMEOUT_RINGING"),
            },
            stop_after_invite_timeout=flag("stop_switch_after_invite_timeout",
                                           "SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT"),
            stop_after_sdp=flag("stop_switch_after_sdp", "SS_SIP_STOP_SWITCH_AFTER_SDP"),
            stop_after_rtp=flag("stop_switch_after_rtp_start",
                                "SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START"),
            stop_after_busy=flag("stop_switch_after_busy",
                                 "SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY"),
            switch_after_ringing=gw.switch_after_ringing if gw is not None else True,
            stop_codes=frozenset(gw.stop_switch_codes) if gw is not None else frozenset(),
            until_connect=params.flag("SS_GATEWAY_SWITCH_UNTIL_CONNECT"),
        )


def timer_for(status: int, has_sdp: bool) -> Timer | None:
    """The timer a provisional response starts (replacing the one running)."""
    if status == 100:
        return Timer.TRYING
    if status == 180:
        return Timer.RINGING
    if 100 < status < 200:  # 183, 181, 182, and any other 1xx, treated as 183 (RFC 3261)
        return Timer.SESSION_PROGRESS_SDP if has_sdp else Timer.SESSION_PROGRESS
    return None


def commits_on_provisional(rules: SwitchRules, status: int, has_sdp: bool) -> bool:
    if rules.until_connect or status == 100:
        return False
    if has_sdp and rules.stop_after_sdp:
        return True
    return not rules.switch_after_ringing


def commits_on_rtp(rules: SwitchRules) -> bool:
    return rules.stop_after_rtp and not rules.until_connect


def on_failure(rules: SwitchRules, status: int, committed: bool) -> Next:
    if status in rules.stop_codes:
        return Next.END
    if rules.until_connect:
        return Next.SWITCH
    if status == 486 and rules.stop_after_busy:
        return Next.END
    return Next.END if committed else Next.SWITCH


def on_invite_timeout(rules: SwitchRules) -> Next:
    if rules.stop_after_invite_timeout and not rules.until_connect:
        return Next.END
    return Next.SWITCH


def on_timer(rules: SwitchRules, committed: bool) -> Next:
    if rules.until_connect:
        return Next.SWITCH
    return Next.END if committed else Next.SWITCH


# When every attempt failed, the caller hears the most telling code: a busy callee over
# a rejection, a number problem over a vendor's trouble, anything over a timeout.
_RANK = (486, 600, 603, 404, 484, 485, 410, 604, 480, 487, 488, 606, 403, 402)


def best_final(codes: list[int]) -> int:
    """The code for the caller after all attempts failed (408 when nothing answered)."""
    if not codes:
        return 408
    for code in _RANK:
        if code in codes:
            return code
    client = [c for c in codes if 400 <= c < 500 and c != 408]
    if client:
        return client[0]
    server = [c for c in codes if c >= 500]
    if server:
        return 503 if 503 in server else server[0]
    return codes[0]
