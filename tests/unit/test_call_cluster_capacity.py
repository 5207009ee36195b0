"""A cluster node's vendor and phone capacities (docs/cluster.md): the call core asks for
a place (``Reserve``) before it dials a hop whose capacity the cluster shares, and gives
back a place no leg used. The harness plays Redis's admission script over
``ctx.cluster``, the cluster's count per counter."""

from __future__ import annotations

from callharness import PHONE_DESTINATION, CallHarness, Context, invite_request, vendor

from b2bua.calls.actions import Occupy, Reserve, Unreserve
from b2bua.calls.call_state import CallState
from b2bua.calls.events import CallerCancel, Side
from b2bua.routing.dns import Plan

A = ("routing", 1)


def cluster_call(*, others: int, capacity: int = 2, plan: Plan | None = None,
                 second: bool = True) -> CallHarness:
    """A call over v1 (``capacity``, ``others`` calls up on other nodes) then v2 (no
    capacity), on a cluster node."""
    gateways = [vendor(1, "44", priority=1, capacity=capacity)]
    if second:
        gateways.append(vendor(2, "44", priority=2))
    ctx = Context(gateways=gateways, cluster={A: others})
    if plan is not None:
        ctx.plans[1] = plan
    return CallHarness(ctx)


def sent_to(h: CallHarness) -> list[str | None]:
    return [a.gateway_name for a in h.call.attempts if a.token]


def left_nothing(h: CallHarness) -> None:
    assert h.call.state is CallState.ENDED
    assert h.in_use() == 0
    assert h.ledger.reserving == []


def test_a_vendor_with_room_in_the_cluster_is_dialled_on_its_reserved_place() -> None:
    h = cluster_call(others=1)
    assert [type(a) for a in h.ledger.actions if isinstance(a, Reserve)] == [Reserve]
    assert h.call.attempts == []  # nothing sent before Redis answers
    h.reserved()
    assert sent_to(h) == ["v1"]
    occupy = next(a for a in h.ledger.actions if isinstance(a, Occupy))
    assert occupy.reserved
    assert h.ctx.cluster == {A: 2}  # taken once, by the reservation
    h.answer(1, 486)
    h.ack_from_caller()
    assert h.ctx.cluster == {A: 1}  # given back with the leg
    left_nothing(h)


def test_a_vendor_full_across_the_cluster_is_skipped_as_if_full_here() -> None:
    h = cluster_call(others=2)
    h.reserved()
    assert sent_to(h) == ["v2"]  # no capacity on v2: dialled without asking
    assert h.ctx.cluster == {A: 2}
    h.answer(1, 200)
    h.ack_from_caller()
    h.in_dialog(Side.CALLER, "BYE")
    left_nothing(h)
    assert h.ctx.cluster == {A: 2}


def test_every_vendor_full_across_the_cluster_gives_503() -> None:
    h = cluster_call(others=2, second=False)
    h.reserved()
    assert h.caller_statuses == [100, 503]
    assert h.cdr.termination_reason.startswith("every matching routing gateway")
    left_nothing(h)


def test_a_cancel_while_redis_is_asked_gives_back_the_late_place() -> None:
    h = cluster_call(others=0)
    h.feed(CallerCancel())
    assert h.call.state is CallState.ENDED and h.caller_statuses[-1] == 487
    h.reserved()  # granted after the call ended
    assert h.ledger.unreserved == [A]
    assert h.ctx.cluster == {A: 0}
    assert h.call.attempts == []


def test_a_reserved_vendor_whose_name_has_no_address_gives_its_place_back() -> None:
    h = cluster_call(others=0, plan=Plan(failure="NXDOMAIN"))
    h.reserved()
    assert h.ledger.unreserved == [A]
    assert h.ctx.cluster == {A: 0}
    assert sent_to(h) == ["v2"]
    assert [a.outcome for a in h.call.attempts] == ["dns_failure", "pending"]


def test_a_phone_full_across_the_cluster_is_busy() -> None:
    ctx = Context(phones={"4420": (PHONE_DESTINATION, 0, "")},
                  cluster={("phone", 7): 1}, phone_capacity={"alice": (7, 1)})
    h = CallHarness(ctx)
    assert isinstance(h.ledger.actions[-1], Reserve)
    h.reserved()
    assert h.caller_statuses == [100, 486]
    assert h.cdr.termination_reason == "phone at capacity"
    assert ctx.cluster == {("phone", 7): 1}


def test_a_phone_with_room_is_called_and_its_place_given_back_at_the_end() -> None:
    ctx = Context(phones={"4420": (PHONE_DESTINATION, 0, "")},
                  cluster={("phone", 7): 0}, phone_capacity={"alice": (7, 1)})
    h = CallHarness(ctx)
    h.reserved()
    assert ctx.cluster == {("phone", 7): 1}
    h.answer(1, 200)
    h.ack_from_caller()
    h.in_dialog(Side.CALLEE, "BYE")
    assert ctx.cluster == {("phone", 7): 0}
    assert h.ledger.unreserved == []


def test_a_switch_on_its_own_reserves_nothing() -> None:
    ctx = Context(gateways=[vendor(1, "44", capacity=1)])
    h = CallHarness(ctx)
    assert not any(isinstance(a, (Reserve, Unreserve)) for a in h.ledger.actions)
    assert sent_to(h) == ["v1"]


def test_two_calls_on_one_node_never_pass_the_clusters_capacity() -> None:
    ctx = Context(gateways=[vendor(1, "44", capacity=1), vendor(2, "44", priority=2)],
                  cluster={A: 0})
    first = CallHarness(ctx)
    second = CallHarness(ctx, invite=invite_request(call_id="in-2"))
    # Both asked before either was answered: Redis admits one of them only.
    first.reserved()
    second.reserved()
    assert sent_to(first) == ["v1"] and sent_to(second) == ["v2"]
    assert ctx.cluster == {A: 1}

