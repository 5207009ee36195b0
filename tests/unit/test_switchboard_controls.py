"""Carrier controls at the switchboard (docs/carrier-controls.md), sans-IO with fake
datagrams: a customer over its call rate answered 503 with Retry-After before a call
exists, a flood from many unknown sources that creates no rate state, a weighted split
of first attempts, and a vendor at its rate skipped for the next."""

from __future__ import annotations

from test_switchboard import (
    CUSTOMER_ADDR,
    V1,
    V2,
    Caller,
    Switch,
    mapping_gateway,
    requests,
    routing_gateway,
    statuses,
)

from b2bua.controls.rates import CallRate
from b2bua.sip.peer import Peer


def rated(switch: Switch, rate: float, burst: int, code: int = 503) -> None:
    switch.gateways.set_mapping([mapping_gateway(call_rate=CallRate(rate, burst),
                                                 call_rate_code=code)])


def test_a_customer_over_its_rate_hears_503_with_retry_after() -> None:
    switch = Switch()
    rated(switch, 0.5, 2)  # two at once, then one each 2 s
    heard = []
    for _ in range(5):
        sent = switch.feed(Caller().invite(), Caller.source)
        heard.append(statuses(sent, CUSTOMER_ADDR))
        refusals = [s.message for s in sent if getattr(s.message, "status", 0) == 503]
        for refusal in refusals:
            assert refusal.get("Retry-After") in ("1", "2")
    assert heard == [[100], [100], [503], [503], [503]]
    assert switch.board.stats.rejected_rate == 3
    assert switch.count("gateway", 1) == 2  # the refused calls were never counted
    assert len(switch.board.calls) == 2


def test_the_refusal_code_is_the_gateways() -> None:
    switch = Switch()
    rated(switch, 1, 1, code=480)
    switch.feed(Caller().invite(), Caller.source)
    assert statuses(switch.feed(Caller().invite(), Caller.source), CUSTOMER_ADDR) == [480]


def test_a_flood_from_many_unknown_sources_keeps_no_rate_state() -> None:
    switch = Switch()
    rated(switch, 1, 1)
    used = switch.board.counts.usage()[0]
    for i in range(5000):
        source = Peer("udp", f"198.18.{i // 250}.{i % 250 + 1}", 5060)
        sent = switch.feed(Caller(source=source).invite(), source)
        # Challenged (SS_REPLY_UNAUTHORIZED On) or dropped by the policy: never a call.
        assert statuses(sent, (source.host, source.port)) in ([], [401])
    assert switch.board.calls == {}
    assert switch.board.counts.usage()[0] == used
    assert switch.board.counts._paced == {}
    assert switch.board.stats.rejected_rate == 0


def test_first_attempts_split_by_weight() -> None:
    switch = Switch(vendors=[routing_gateway(1, V1[0], 0, weight=3),
                             routing_gateway(2, V2[0], 0, weight=1)])
    firsts = []
    for _ in range(8):
        sent = switch.feed(Caller().invite(), Caller.source)
        firsts.append("v1" if requests(sent, V1, "INVITE") else "v2")
        assert len(requests(sent, V1, "INVITE") + requests(sent, V2, "INVITE")) == 1
    assert firsts.count("v1") == 6 and firsts.count("v2") == 2


def test_a_vendor_at_its_rate_is_skipped_for_the_next() -> None:
    switch = Switch(vendors=[routing_gateway(1, V1[0], 0, call_rate=CallRate(1, 1)),
                             routing_gateway(2, V2[0], 1)])
    first = switch.feed(Caller().invite(), Caller.source)
    assert len(requests(first, V1, "INVITE")) == 1
    second = switch.feed(Caller().invite(), Caller.source)
    assert requests(second, V1, "INVITE") == [] and len(requests(second, V2, "INVITE")) == 1
    assert switch.board.stats.vendor_rate_limited == 1
