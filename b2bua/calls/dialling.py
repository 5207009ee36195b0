"""Routing and attempts: where a call may go, the INVITE of each attempt, and what the
caller hears when every destination failed. Pure functions of the call's numbers and
the switch's answers (``context.CallContext``); the call's core (``call.py``) drives
them with ``failover.py``'s switching rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from b2bua.calls import failover
from b2bua.calls.attempt import ALLOW, Attempt
from b2bua.calls.context import CallContext
from b2bua.calls.endpoints import Destination, Origin
from b2bua.calls.liveness import outbound_headers
from b2bua.numbers.lists import NumberGroups
from b2bua.numbers.transform import TransformTable
from b2bua.routing.dns import Target
from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.select import RoutePlan
from b2bua.sip.dialog import Dialog, new_tag
from b2bua.sip.message import Request, Response
from b2bua.sip.peer import Peer
from b2bua.sip.uri import user_at

Hop = Destination | RoutingGateway  # a phone's binding, or a vendor (resolved per attempt)
RETRY_AFTER_MAX = 86400  # a vendor's Retry-After holds it out of routing at most a day


@dataclass(frozen=True, slots=True)
class Refusal:
    """The call goes nowhere: what the caller hears, and why (the CDR's reason)."""

    code: int
    reason: str | None
    why: str
    by_lists: bool = False  # refused by a black/white list
    callee_phone: str | None = None  # the callee is this phone (not reachable now)


def call_route(ctx: CallContext, origin: Origin, caller: str, callee: str, now: float
               ) -> tuple[list[Hop], str | None] | Refusal:
    """The hops to try in order and the callee's phone if it is one; or the refusal.

    The lists first; then a registered phone's number goes to the phone, anything else
    to the vendors whose prefix matches (``routing/select.py``), never back to the
    vendor the call came from, each vendor's own lists applied.
    """
    groups = ctx.numbers.groups
    refusal = origin.numbers.refusal(caller, callee, groups)
    if refusal is not None:
        return Refusal(403, "Forbidden", refusal, by_lists=True)
    phone = ctx.phone_destination(callee, now)
    if phone is not None:
        return phone_route(phone, callee)
    return vendor_route(origin, ctx.plan_route(callee, now), caller, callee, groups)


# call_route's steps, which the routing dry run (calls/dryrun.py) takes too.

def phone_route(phone: tuple[Destination | None, int, str], callee: str
                ) -> tuple[list[Hop], str] | Refusal:
    """The callee is one of our phones: its binding, or why it cannot be reached."""
    destination, code, why = phone
    if destination is None:
        return Refusal(code, None, why, callee_phone=callee)
    return [destination], callee


def came_from(origin: Origin, gw: RoutingGateway) -> bool:
    """A call never goes back to the vendor it came from."""
    return origin.kind == "vendor" and gw.id == origin.id


def vendor_refusal(gw: RoutingGateway, caller: str, callee: str, groups: NumberGroups
                   ) -> str | None:
    """Why the vendor's own black/white lists refuse the platform numbers, or None."""
    refused = gw.numbers.refusal(caller, callee, groups)
    return None if refused is None else f'routing gateway "{gw.name}": {refused}'


def vendor_route(origin: Origin, plan: RoutePlan, caller: str, callee: str,
                 groups: NumberGroups) -> tuple[list[Hop], None] | Refusal:
    """The route's vendors that take the call, or the refusal when none does."""
    gateways: list[Hop] = []
    first_refusal: str | None = None
    for gw in plan.gateways:
        if came_from(origin, gw):
            continue
        refused = vendor_refusal(gw, caller, callee, groups)
        if refused is None:
            gateways.append(gw)
        elif first_refusal is None:
            first_refusal = refused
    if gateways:
        return gateways, None
    if first_refusal is not None:
        return Refusal(403, "Forbidden", first_refusal, by_lists=True)
    return Refusal(404 if plan.matched == 0 else 503, None, plan.reason_if_empty)


def vendor_destination(gw: RoutingGateway, caller: str, callee: str,
                       transforms: TransformTable, target: Target | None,
                       proxy: Peer | None = None) -> Destination:
    """A vendor's numbers are computed for each attempt, from the platform numbers;
    ``proxy``: the outbound proxy it is sent through (SS_OUTBOUND_PROXY)."""
    caller_out, callee_out = gw.numbers.rewrite(caller, callee, transforms)
    return Destination.vendor(gw, caller_out, callee_out, gw.numbers.pai(caller_out),
                              target).through(proxy)


def outbound_invite(ctx: CallContext, dest: Destination, invite: Request, caller_routed: str,
                    body: bytes) -> tuple[Dialog, Request, str]:
    """An attempt's dialog and INVITE, and the caller number it carries."""
    display = invite.from_.display
    caller = dest.caller if dest.caller is not None else caller_routed
    from_uri = f"<sip:{user_at(caller, ctx.advertised_host)}>"
    if display:
        from_uri = f'"{display}" {from_uri}'
    dialog = Dialog(
        call_id=ctx.new_call_id(),
        local_tag=new_tag(),
        local_uri=from_uri,
        remote_uri=dest.to_uri,
        remote_target=dest.request_uri,
        peer=dest.peer,
        via_host=ctx.sent_by,
        contact=ctx.contact(dest.peer.transport),
        pinned=dest.pinned,
        route_set=list(dest.route),
    )
    extra = [("Allow", ALLOW), *outbound_headers(ctx.params)]
    if dest.pai:  # a PAI rule that leaves no number asserts nothing
        extra.append(("P-Asserted-Identity", f"<sip:{dest.pai}@{ctx.advertised_host}>"))
    request = dialog.create_request("INVITE", body, invite.get("Content-Type"), cseq=1,
                                    extra=extra)
    max_forwards = invite.max_forwards
    request.set("Max-Forwards", str(70 if max_forwards is None else max_forwards - 1))
    return dialog, request, caller


def map_vendor_failure(status: int) -> int:
    """What the caller hears for a vendor's final failure (docs/calls.md)."""
    if status in (401, 407) or 300 <= status < 400:
        return 503
    return status


# Attempts recorded without an INVITE: the gateway's name gave no address, or the
# gateway was at its call rate.
NOT_SENT = frozenset({"dns_failure", "rate_limited"})


def all_failed(attempts: Sequence[Attempt], failure_codes: list[int]
               ) -> tuple[int, str, str]:
    """The route is spent: the caller's final code, who hung up, and why
    (docs/failover.md, "The caller's final code after every attempt failed")."""
    sent = [a for a in attempts if a.outcome not in NOT_SENT]
    if failure_codes:
        code = map_vendor_failure(failover.best_final(failure_codes))
    else:
        code = 408 if sent else 503
    if sent:
        why = "every routing gateway failed"
    elif attempts and all(a.outcome == "rate_limited" for a in attempts):
        why = "every routing gateway is at its call rate"
    elif attempts:
        why = attempts[-1].note  # no address for any gateway: the DNS's answer
    else:
        why = "every matching routing gateway is disabled, full or unavailable"
    return code, "callee" if code != 408 and sent else "system", why


def retry_after(response: Response) -> int | None:
    """A 503's Retry-After in seconds (at most a day); None without a usable one. Its
    comment and parameters are ignored (RFC 3261 20.33: ``120 (meeting);duration=60``)."""
    value = (response.get("Retry-After") or "").split(";")[0].split("(")[0].strip()
    if value.isdigit() and int(value) > 0:
        return min(int(value), RETRY_AFTER_MAX)
    return None
