"""The gateway switching rules of ``docs/failover.md`` (timers, commit, the decision table,
the caller's final code), one table row or rule per case, against
``b2bua/calls/failover.py``'s pure decisions."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.calls.call import map_vendor_failure
from b2bua.calls.failover import (
    Next,
    SwitchRules,
    Timer,
    best_final,
    commits_on_provisional,
    commits_on_rtp,
    on_failure,
    on_invite_timeout,
    on_timer,
    timer_for,
)
from b2bua.config.live import Params
from b2bua.routing.gateways import RoutingGateway

END, SWITCH = Next.END, Next.SWITCH

# System values unlike the registry's defaults and unlike each other, so a rule that
# reads the wrong parameter shows.
SYSTEM_SECONDS = {
    "SS_SIP_TIMEOUT_INVITE": 7,
    "SS_SIP_TIMEOUT_TRYING": 11,
    "SS_SIP_TIMEOUT_SESSION_PROGRESS": 13,
    "SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP": 17,
    "SS_SIP_TIMEOUT_RINGING": 19,
}

# The "Timers of an attempt" table: gateway override, system parameter, where the
# resolved rules hold it (None: the INVITE timeout).
TIMER_ROWS: list[tuple[str, str, Timer | None]] = [
    ("invite_timeout", "SS_SIP_TIMEOUT_INVITE", None),
    ("trying_timeout", "SS_SIP_TIMEOUT_TRYING", Timer.TRYING),
    ("session_progress_timeout", "SS_SIP_TIMEOUT_SESSION_PROGRESS", Timer.SESSION_PROGRESS),
    ("session_progress_sdp_timeout", "SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP",
     Timer.SESSION_PROGRESS_SDP),
    ("ringing_timeout", "SS_SIP_TIMEOUT_RINGING", Timer.RINGING),
]

# The stop-switch flags: gateway field (None: the parameter), its default parameter, and
# the resolved rules' attribute.
FLAG_ROWS: list[tuple[str, str, str]] = [
    ("stop_switch_after_invite_timeout", "SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT",
     "stop_after_invite_timeout"),
    ("stop_switch_after_sdp", "SS_SIP_STOP_SWITCH_AFTER_SDP", "stop_after_sdp"),
    ("stop_switch_after_rtp_start", "SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START", "stop_after_rtp"),
    ("stop_switch_after_busy", "SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY", "stop_after_busy"),
]

# "The caller's final code after every attempt failed", in the doc's order.
DOC_RANK = (486, 600, 603, 404, 484, 485, 410, 604, 480, 487, 488, 606, 403, 402)


def onoff(value: bool) -> str:
    return "On" if value else "Off"


def system(**values: Any) -> Params:
    """The parameters as the engine holds them: the registry's, then the given ones."""
    params = Params()
    params.values.update(SYSTEM_SECONDS)
    params.values.update(values)
    return params


def gateway(**fields: Any) -> RoutingGateway:
    return RoutingGateway(id=1, name="v1", host="203.0.113.10", port=5060, transport="udp",
                          prefixes=("44",), priority=0, prefix_mode="terminate",
                          capacity=None, enabled=True, **fields)


def make_rules(*, stop_after_invite_timeout: bool = False, stop_after_sdp: bool = False,
               stop_after_rtp: bool = False, stop_after_busy: bool = False,
               until_connect: bool = False, switch_after_ringing: bool = True,
               stop_codes: tuple[int, ...] = ()) -> SwitchRules:
    """Rules resolved from system parameters alone (the gateway overrides nothing)."""
    params = system(
        SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT=onoff(stop_after_invite_timeout),
        SS_SIP_STOP_SWITCH_AFTER_SDP=onoff(stop_after_sdp),
        SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START=onoff(stop_after_rtp),
        SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY=onoff(stop_after_busy),
        SS_GATEWAY_SWITCH_UNTIL_CONNECT=onoff(until_connect),
    )
    return SwitchRules.resolve(params, gateway(switch_after_ringing=switch_after_ringing,
                                               stop_switch_codes=stop_codes))


def timeout_of(rules: SwitchRules, where: Timer | None) -> float:
    return rules.invite_timeout if where is None else rules.timers[where]


# -- SwitchRules.resolve -------------------------------------------------------------------


def test_every_timer_is_the_system_value_when_the_gateway_overrides_none() -> None:
    rules = SwitchRules.resolve(system(), gateway())
    assert rules.invite_timeout == 7
    assert rules.timers == {Timer.TRYING: 11, Timer.SESSION_PROGRESS: 13,
                            Timer.SESSION_PROGRESS_SDP: 17, Timer.RINGING: 19}


@pytest.mark.parametrize(("field", "param", "where"), TIMER_ROWS,
                         ids=[row[0] for row in TIMER_ROWS])
def test_a_gateway_timer_override_wins_and_only_for_its_timer(
        field: str, param: str, where: Timer | None) -> None:
    rules = SwitchRules.resolve(system(), gateway(**{field: 3}))
    assert timeout_of(rules, where) == 3
    for other_field, other_param, other_where in TIMER_ROWS:
        if other_field != field:
            assert timeout_of(rules, other_where) == SYSTEM_SECONDS[other_param]


@pytest.mark.parametrize(("field", "param", "where"), TIMER_ROWS,
                         ids=[row[0] for row in TIMER_ROWS])
def test_a_gateway_timer_of_zero_follows_the_system_parameter(
        field: str, param: str, where: Timer | None) -> None:
    rules = SwitchRules.resolve(system(**{param: 42}), gateway(**{field: 0}))
    assert timeout_of(rules, where) == 42


@pytest.mark.parametrize(("field", "param", "where"), TIMER_ROWS,
                         ids=[row[0] for row in TIMER_ROWS])
def test_without_a_gateway_every_timer_is_the_system_value(
        field: str, param: str, where: Timer | None) -> None:
    assert timeout_of(SwitchRules.resolve(system(), None), where) == SYSTEM_SECONDS[param]


@pytest.mark.parametrize(("field", "param", "attr"), FLAG_ROWS, ids=[r[2] for r in FLAG_ROWS])
@pytest.mark.parametrize(("system_on", "own", "expected"), [
    (True, None, True),  # None: the system parameter
    (False, None, False),
    (True, False, False),  # a set value wins, both ways
    (False, True, True),
    (True, True, True),
    (False, False, False),
])
def test_a_stop_switch_flag_is_the_gateways_when_set_else_the_system_parameter(
        field: str, param: str, attr: str, system_on: bool, own: bool | None,
        expected: bool) -> None:
    # Every other flag the opposite way, so a mix-up between flags shows.
    values = {p: onoff(not system_on) for _, p, _ in FLAG_ROWS}
    values[param] = onoff(system_on)
    rules = SwitchRules.resolve(system(**values), gateway(**{field: own}))
    assert getattr(rules, attr) is expected
    for _, _, other_attr in FLAG_ROWS:
        if other_attr != attr:
            assert getattr(rules, other_attr) is (not system_on), other_attr


@pytest.mark.parametrize(("field", "param", "attr"), FLAG_ROWS, ids=[r[2] for r in FLAG_ROWS])
@pytest.mark.parametrize("system_on", [True, False])
def test_without_a_gateway_a_stop_switch_flag_is_the_system_parameter(
        field: str, param: str, attr: str, system_on: bool) -> None:
    rules = SwitchRules.resolve(system(**{param: onoff(system_on)}), None)
    assert getattr(rules, attr) is system_on


@pytest.mark.parametrize("allowed", [True, False])
def test_switch_after_ringing_is_the_gateways(allowed: bool) -> None:
    assert SwitchRules.resolve(system(), gateway(switch_after_ringing=allowed)) \
        .switch_after_ringing is allowed


@pytest.mark.parametrize(("codes", "expected"), [
    ((), frozenset()),
    ((480,), frozenset({480})),
    ((404, 484), frozenset({404, 484})),
])
def test_stop_codes_are_the_gateways(codes: tuple[int, ...], expected: frozenset[int]) -> None:
    assert SwitchRules.resolve(system(), gateway(stop_switch_codes=codes)).stop_codes == expected


@pytest.mark.parametrize("on", [True, False])
@pytest.mark.parametrize("gw", [gateway(), gateway(stop_switch_after_busy=True,
                                                   stop_switch_after_sdp=True,
                                                   switch_after_ringing=False), None],
                         ids=["plain gateway", "gateway with stop rules", "no gateway"])
def test_until_connect_is_the_system_parameter(on: bool, gw: RoutingGateway | None) -> None:
    params = system(SS_GATEWAY_SWITCH_UNTIL_CONNECT=onoff(on))
    assert SwitchRules.resolve(params, gw).until_connect is on


# -- timers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "sdp", "expected"), [
    (100, False, Timer.TRYING),
    (100, True, Timer.TRYING),
    (180, False, Timer.RINGING),
    (180, True, Timer.RINGING),
    (183, False, Timer.SESSION_PROGRESS),
    (183, True, Timer.SESSION_PROGRESS_SDP),
    (181, False, Timer.SESSION_PROGRESS),
    (182, False, Timer.SESSION_PROGRESS),
    (181, True, Timer.SESSION_PROGRESS_SDP),
    (199, False, Timer.SESSION_PROGRESS),  # an unknown or other 1xx counts as 183
    (150, True, Timer.SESSION_PROGRESS_SDP),
])
def test_the_timer_a_provisional_starts(status: int, sdp: bool, expected: Timer) -> None:
    assert timer_for(status, sdp) is expected


@settings(max_examples=300, deadline=None)
@given(st.integers(101, 199).filter(lambda code: code != 180), st.booleans())
def test_every_other_provisional_is_session_progress(status: int, sdp: bool) -> None:
    expected = Timer.SESSION_PROGRESS_SDP if sdp else Timer.SESSION_PROGRESS
    assert timer_for(status, sdp) is expected


@pytest.mark.parametrize("sdp", [False, True])
@pytest.mark.parametrize("status", [200, 302, 486, 503, 603])
def test_final_codes_start_no_timer(status: int, sdp: bool) -> None:
    assert timer_for(status, sdp) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(200, 699), st.booleans())
def test_no_final_code_starts_a_timer(status: int, sdp: bool) -> None:
    assert timer_for(status, sdp) is None


# -- commit --------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "sdp", "stop_after_sdp", "ringing_allowed", "expected"), [
    # a provisional with SDP, stop after SDP On
    (183, True, True, True, True),
    (180, True, True, True, True),
    (110, True, True, True, True),
    # ... Off: SDP alone does not commit
    (183, True, False, True, False),
    (180, True, False, True, False),
    # no SDP, switching after ringing allowed: no commit
    (183, False, True, True, False),
    (180, False, True, True, False),
    (181, False, True, True, False),
    # any 18x when the gateway does not allow switching after ringing
    (180, False, False, False, True),
    (181, False, False, False, True),
    (182, False, False, False, True),
    (183, False, False, False, True),
    (184, False, False, False, True),
    (189, False, False, False, True),
    (183, True, False, False, True),
    # 100 Trying is no 18x and carries no SDP
    (100, False, True, False, False),
])
def test_commit_on_a_provisional(status: int, sdp: bool, stop_after_sdp: bool,
                                 ringing_allowed: bool, expected: bool) -> None:
    rules = make_rules(stop_after_sdp=stop_after_sdp, switch_after_ringing=ringing_allowed)
    assert commits_on_provisional(rules, status, sdp) is expected


@pytest.mark.parametrize(("status", "sdp"), [(183, True), (180, True), (180, False),
                                             (183, False), (181, False)])
def test_until_connect_overrides_every_commit_on_a_provisional(status: int, sdp: bool) -> None:
    rules = make_rules(stop_after_sdp=True, switch_after_ringing=False, until_connect=True)
    assert commits_on_provisional(rules, status, sdp) is False


@pytest.mark.parametrize(("system_on", "own", "expected"), [
    (True, None, True), (False, None, False), (True, False, False), (False, True, True)])
def test_the_gateways_stop_after_sdp_decides_the_sdp_commit(
        system_on: bool, own: bool | None, expected: bool) -> None:
    rules = SwitchRules.resolve(system(SS_SIP_STOP_SWITCH_AFTER_SDP=onoff(system_on)),
                                gateway(stop_switch_after_sdp=own))
    assert commits_on_provisional(rules, 183, True) is expected


@settings(max_examples=300, deadline=None)
@given(st.integers(180, 189), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_an_18x_commits_exactly_as_the_commit_rules_say(
        status: int, sdp: bool, stop_after_sdp: bool, ringing_allowed: bool,
        until_connect: bool) -> None:
    rules = make_rules(stop_after_sdp=stop_after_sdp, switch_after_ringing=ringing_allowed,
                       until_connect=until_connect)
    doc = not until_connect and ((sdp and stop_after_sdp) or not ringing_allowed)
    assert commits_on_provisional(rules, status, sdp) is doc


@pytest.mark.parametrize(("stop_after_rtp", "until_connect", "expected"), [
    (True, False, True),
    (False, False, False),
    (True, True, False),
    (False, True, False),
])
def test_commit_on_rtp_start(stop_after_rtp: bool, until_connect: bool, expected: bool) -> None:
    rules = make_rules(stop_after_rtp=stop_after_rtp, until_connect=until_connect)
    assert commits_on_rtp(rules) is expected


@pytest.mark.parametrize(("system_on", "own", "expected"), [
    (True, None, True), (False, None, False), (True, False, False), (False, True, True)])
def test_the_gateways_stop_after_rtp_start_decides_the_rtp_commit(
        system_on: bool, own: bool | None, expected: bool) -> None:
    rules = SwitchRules.resolve(
        system(SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START=onoff(system_on)),
        gateway(stop_switch_after_rtp_start=own))
    assert commits_on_rtp(rules) is expected


# -- decision table: final failures --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "committed", "stop_codes", "stop_after_busy", "until_connect", "expected"), [
        # a final code in the gateway's stop_switch_codes: that code, committed or not,
        # even with until connect On
        (480, False, (480,), False, False, END),
        (480, True, (480,), False, False, END),
        (480, False, (480,), False, True, END),
        (503, False, (404, 503), False, True, END),
        (486, False, (486,), False, True, END),
        # 486 with stop after busy On: 486, committed or not
        (486, False, (), True, False, END),
        (486, True, (), True, False, END),
        # ... Off: as any other failure
        (486, False, (), False, False, SWITCH),
        (486, True, (), False, False, END),
        # until connect overrides the busy rule
        (486, False, (), True, True, SWITCH),
        # any other 4xx/5xx/6xx (and 3xx): next gateway, or the code when committed
        (404, False, (), True, False, SWITCH),
        (404, True, (), True, False, END),
        (480, False, (404,), True, False, SWITCH),
        (480, True, (404,), True, False, END),
        (503, False, (), True, False, SWITCH),
        (503, True, (), True, False, END),
        (500, False, (), True, False, SWITCH),
        (603, False, (), True, False, SWITCH),
        (603, True, (), True, False, END),
        (401, False, (), True, False, SWITCH),
        (407, True, (), True, False, END),
        (302, False, (), True, False, SWITCH),
        (302, True, (), True, False, END),
        # until connect: any other failure switches
        (503, False, (), True, True, SWITCH),
        (503, True, (), True, True, SWITCH),
        (603, False, (480,), True, True, SWITCH),
    ])
def test_a_final_failure(status: int, committed: bool, stop_codes: tuple[int, ...],
                         stop_after_busy: bool, until_connect: bool, expected: Next) -> None:
    rules = make_rules(stop_codes=stop_codes, stop_after_busy=stop_after_busy,
                       until_connect=until_connect)
    assert on_failure(rules, status, committed) is expected


@pytest.mark.parametrize(("system_on", "own", "expected"), [
    (True, None, END), (False, None, SWITCH), (True, False, SWITCH), (False, True, END)])
def test_the_gateways_stop_after_busy_decides_a_486(
        system_on: bool, own: bool | None, expected: Next) -> None:
    rules = SwitchRules.resolve(
        system(SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY=onoff(system_on)),
        gateway(stop_switch_after_busy=own))
    assert on_failure(rules, 486, False) is expected


@settings(max_examples=300, deadline=None)
@given(st.integers(300, 699), st.booleans(), st.booleans(), st.booleans(),
       st.sets(st.integers(300, 699), max_size=4))
def test_a_stop_code_always_ends_and_until_connect_otherwise_always_switches(
        status: int, committed: bool, stop_after_busy: bool, until_connect: bool,
        others: set[int]) -> None:
    stopping = make_rules(stop_codes=(*sorted(others), status), stop_after_busy=stop_after_busy,
                          until_connect=until_connect)
    assert on_failure(stopping, status, committed) is END
    if until_connect:
        free = make_rules(stop_codes=tuple(sorted(others - {status})),
                          stop_after_busy=stop_after_busy, until_connect=True)
        assert on_failure(free, status, committed) is SWITCH


@pytest.mark.parametrize(("status", "expected"), [
    (401, 503), (407, 503), (300, 503), (301, 503), (302, 503), (380, 503),
    (404, 404), (480, 480), (486, 486), (500, 500), (503, 503), (603, 603)])
def test_a_committed_calls_vendor_failure_as_the_caller_hears_it(
        status: int, expected: int) -> None:
    assert map_vendor_failure(status) == expected


# -- decision table: timeouts --------------------------------------------------------------


@pytest.mark.parametrize(("stop_after_invite_timeout", "until_connect", "expected"), [
    (False, False, SWITCH),
    (True, False, END),
    (True, True, SWITCH),  # until connect overrides the stop-after-INVITE-timeout rule
    (False, True, SWITCH),
])
def test_no_response_within_the_invite_timeout(stop_after_invite_timeout: bool,
                                               until_connect: bool, expected: Next) -> None:
    rules = make_rules(stop_after_invite_timeout=stop_after_invite_timeout,
                       until_connect=until_connect)
    assert on_invite_timeout(rules) is expected


@pytest.mark.parametrize(("system_on", "own", "expected"), [
    (True, None, END), (False, None, SWITCH), (True, False, SWITCH), (False, True, END)])
def test_the_gateways_stop_after_invite_timeout_decides(
        system_on: bool, own: bool | None, expected: Next) -> None:
    rules = SwitchRules.resolve(
        system(SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT=onoff(system_on)),
        gateway(stop_switch_after_invite_timeout=own))
    assert on_invite_timeout(rules) is expected


@pytest.mark.parametrize(("committed", "until_connect", "expected"), [
    (False, False, SWITCH),  # CANCEL, next gateway
    (True, False, END),  # CANCEL, 408 to the caller
    (False, True, SWITCH),
    (True, True, SWITCH),  # until connect: any timer switches
])
def test_a_trying_progress_or_ringing_timer_expires(committed: bool, until_connect: bool,
                                                    expected: Next) -> None:
    assert on_timer(make_rules(until_connect=until_connect), committed) is expected


@pytest.mark.parametrize("sdp_rule", [True, False])
@pytest.mark.parametrize("busy_rule", [True, False])
def test_until_connect_end_to_end_example(sdp_rule: bool, busy_rule: bool) -> None:
    """The doc's example: v1 183+SDP then 503, v2 486, v3 answers, until connect On (with
    the SDP and busy rules On or Off): v1, v2 and v3 are all tried."""
    rules = make_rules(stop_after_sdp=sdp_rule, stop_after_busy=busy_rule, until_connect=True)
    committed = commits_on_provisional(rules, 183, True)
    assert committed is False
    assert on_failure(rules, 503, committed) is SWITCH
    assert on_failure(rules, 486, committed) is SWITCH


# -- the caller's final code after every attempt failed ------------------------------------


@pytest.mark.parametrize(("codes", "expected"), [
    ([], 408),  # nothing answered: every attempt timed out
    ([503, 486], 486),  # a busy over a vendor's trouble
    ([404, 486], 486),  # ... and over a rejection
    ([603, 486, 600], 486),
    ([503, 404], 404),  # a number problem over a vendor's trouble
    ([500, 484], 484),
    ([502, 404, 503], 404),
    ([415, 600], 600),  # a ranked code over any other 4xx
    ([422, 402], 402),
    ([408, 415], 415),  # another 4xx, but not 408
    ([503, 415], 415),  # any other 4xx over a 5xx
    ([500, 503, 502], 503),  # 503 preferred among 5xx
    ([502, 503], 503),
    ([408, 503], 503),
    ([408, 500], 500),
    ([502], 502),
    ([415, 422], 415),  # the first other 4xx
    ([422, 415], 422),
])
def test_best_final(codes: list[int], expected: int) -> None:
    assert best_final(codes) == expected


@pytest.mark.parametrize(("better", "worse"), list(pairwise(DOC_RANK)),
                         ids=[f"{a}>{b}" for a, b in pairwise(DOC_RANK)])
def test_best_final_follows_the_docs_order(better: int, worse: int) -> None:
    assert best_final([worse, better]) == better
    assert best_final([better, worse]) == better


def test_best_final_of_every_ranked_code_in_reverse_is_486() -> None:
    assert best_final(list(reversed(DOC_RANK))) == 486
    assert best_final(list(reversed(DOC_RANK[1:]))) == 600


RESPONSES = st.lists(st.integers(300, 699), max_size=8)


@settings(max_examples=500, deadline=None)
@given(RESPONSES)
def test_best_final_is_one_of_the_codes_and_486_whenever_given(codes: list[int]) -> None:
    result = best_final(codes)
    if not codes:
        assert result == 408
    else:
        assert result in codes
    if 486 in codes:
        assert result == 486


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(DOC_RANK), st.integers(400, 599)), min_size=1,
                max_size=8))
def test_best_final_takes_the_best_ranked_code_in_any_order(codes: list[int]) -> None:
    ranked = [c for c in DOC_RANK if c in codes]
    result = best_final(codes)
    if ranked:
        assert result == ranked[0]
        assert best_final(list(reversed(codes))) == ranked[0]
    elif any(400 <= c < 500 and c != 408 for c in codes):
        assert 400 <= result < 500 and result != 408
    elif 503 in codes:
        assert result == 503
    elif any(500 <= c < 600 for c in codes):
        assert 500 <= result < 600
