"""The routing dry run (``POST /api/v1/routing/test``): what a call from ``origin`` with
these numbers would do now, without placing it.

It takes the call's own steps in the call's order (docs/numbers.md, "Order of
operations"; ``dialling.call_route``), each with what decided it:

1. admission: the origin enabled and within its capacity, the engine not overloaded;
2. the origin's dial plans and transform: the platform numbers;
3. the origin's black/white lists (a refusal ends the dry run, as it ends the call);
4. one of our phones as the callee (the call then goes there and nowhere else);
5. the vendors: ``routing/select.py``'s order with every gateway's verdict, each
   vendor's own lists, ``SS_GATEWAY_SWITCH_LIMIT``, and the numbers each vendor would be
   sent after its own rules.

Pure: the switch's state comes through the context (the switchboard, in the engine),
whose counts and holds are the ones routing reads. The answer is plain data for the
control socket and the API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from b2bua.calls.dialling import Refusal, came_from, phone_route, vendor_refusal, vendor_route
from b2bua.calls.endpoints import Destination, Origin
from b2bua.config.live import Params
from b2bua.numbers.lists import NumberGroups
from b2bua.numbers.rules import NumberTables
from b2bua.routing.dns import DEFAULT_PORT, Plan, is_ip
from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.select import IN_ROUTE, GatewayVerdict, RouteExplanation

# Reasons a vendor of the routing order is still not dialled (beside select.ROUTE_REASONS).
CAME_FROM = "came_from"
REFUSED_BY_LISTS = "refused_by_lists"
SWITCH_LIMIT = "switch_limit"


class DryRunContext(Protocol):
    params: Params
    numbers: NumberTables

    def phone_destination(self, callee: str, now: float
                          ) -> tuple[Destination | None, int, str] | None: ...

    def explain_route(self, callee: str, now: float) -> RouteExplanation: ...

    def peek_vendor(self, gw: RoutingGateway) -> Plan: ...


@dataclass(frozen=True, slots=True)
class Admission:
    """What admission reads of the origin and the engine when an INVITE arrives."""

    enabled: bool
    current_calls: int
    overloaded: bool = False


def explain_call(ctx: DryRunContext, origin: Origin, caller: str, callee: str, now: float,
                 admission: Admission) -> dict[str, Any]:
    """The dry run of a call from ``origin`` with ``caller`` and ``callee`` as received;
    the keys are those of the API's answer (``api/routes/routing.py``)."""
    out: dict[str, Any] = {
        "at": now,
        "origin": {"kind": "mapping_gateway" if origin.kind == "gateway" else origin.kind,
                   "id": origin.id, "name": origin.name, "enabled": admission.enabled,
                   "current_calls": admission.current_calls, "capacity": origin.capacity},
        "received": {"caller": caller, "callee": callee},
        "platform": None, "stages": [], "lists": [], "phone": None, "route": [],
        "gateways": [],
    }
    refused = _admission(origin, admission)
    if refused is not None:
        out["result"] = _refused("admission", refused)
        return out

    side = "phone" if origin.kind == "phone" else "mapping"
    caller, callee, steps = origin.numbers.explain_rewrite(caller, callee,
                                                            ctx.numbers.transforms)
    out["platform"] = {"caller": caller, "callee": callee}
    out["stages"] = [{"side": side, "gateway": origin.name, **asdict(step)} for step in steps]

    groups = ctx.numbers.groups
    out["lists"] = [{"gateway": origin.name, **asdict(check)}
                    for check in origin.numbers.explain_lists(caller, callee, groups)]
    refusal = origin.numbers.refusal(caller, callee, groups)
    if refusal is not None:
        out["result"] = _refused("lists", Refusal(403, "Forbidden", refusal, by_lists=True))
        return out

    phone = ctx.phone_destination(callee, now)
    if phone is not None:
        destination, code, why = phone
        binding = destination.binding if destination is not None else None
        out["phone"] = {
            "username": callee, "reachable": destination is not None,
            "contact": binding.contact if binding is not None else None,
            "source": f"{binding.source.host}:{binding.source.port}" if binding else None,
            "nat": binding.nat if binding is not None else None,
            "code": code or None, "reason": why or None,
        }
        routed_phone = phone_route(phone, callee)
        out["result"] = _refused("phone", routed_phone) if isinstance(routed_phone, Refusal) \
            else {"outcome": "phone", "stage": "phone", "code": None, "by_lists": False,
                  "reason": f'the callee is our registered phone "{callee}"'}
        return out

    explanation = ctx.explain_route(callee, now)
    routed = vendor_route(origin, explanation.plan, caller, callee, groups)
    hops = [] if isinstance(routed, Refusal) else [hop.id for hop in routed[0]
                                                   if isinstance(hop, RoutingGateway)]
    limit = ctx.params["SS_GATEWAY_SWITCH_LIMIT"]
    for verdict in explanation.verdicts:
        view = _gateway(ctx, verdict, caller, callee)
        gw = verdict.gateway
        if verdict.reason == IN_ROUTE:
            checks = () if came_from(origin, gw) else gw.numbers.explain_lists(caller, callee,
                                                                             groups)
            view["lists"] = [asdict(check) for check in checks]
            _in_route(view, origin, gw, caller, callee, groups, hops, limit,
                      verdict.weighted_turn)
        out["gateways"].append(view)
    out["route"] = sorted(
        ({"position": view["position"], "id": view["id"], "name": view["name"],
          "target": view["target"], **(view["sent"] or {})}
         for view in out["gateways"] if view["verdict"] == "in"),
        key=lambda entry: entry["position"])
    if isinstance(routed, Refusal):
        out["result"] = _refused("routing", routed)
    else:
        count = len(out["route"])
        out["result"] = {"outcome": "vendors", "stage": "routing", "code": None,
                         "by_lists": False,
                         "reason": f"{count} vendor{'s' if count > 1 else ''} to try in turn"}
    return out


def _admission(origin: Origin, admission: Admission) -> Refusal | None:
    """``Switchboard.on_request`` and ``_new_call``'s checks, in their order."""
    what = "phone" if origin.kind == "phone" else "mapping gateway"
    if not admission.enabled:
        return Refusal(0, None, f'{what} "{origin.name}" is disabled: its requests are '
                                "not recognised (an unknown source's)")
    if admission.overloaded:
        return Refusal(503, None, "the engine is overloaded (SS_OVERLOAD_LOOP_LAG): new calls "
                                  "are refused for now")
    if origin.capacity is not None and admission.current_calls >= origin.capacity:
        return Refusal(503, None, f'{what} "{origin.name}" at capacity: '
                                  f"{admission.current_calls} of {origin.capacity} calls")
    return None


def _refused(stage: str, refusal: Refusal) -> dict[str, Any]:
    return {"outcome": "refused", "stage": stage, "code": refusal.code or None,
            "reason": refusal.why, "by_lists": refusal.by_lists}


def _in_route(view: dict[str, Any], origin: Origin, gw: RoutingGateway, caller: str,
              callee: str, groups: NumberGroups, hops: list[int], limit: int | None,
              weighted_turn: bool = False) -> None:
    """A gateway of the routing order: dialled, or why not (``vendor_route``'s reasons,
    then the switch limit)."""
    refused = vendor_refusal(gw, caller, callee, groups)
    if came_from(origin, gw):
        view.update(verdict="out", position=None, reason=CAME_FROM,
                    detail="the vendor the call came from")
    elif refused is not None:
        view.update(verdict="out", position=None, reason=REFUSED_BY_LISTS, detail=refused)
    elif limit and hops.index(gw.id) >= limit:
        view.update(verdict="out", position=None, reason=SWITCH_LIMIT,
                    detail=f"SS_GATEWAY_SWITCH_LIMIT {limit}: the call ends after "
                           f"{limit} attempt{'s' if limit > 1 else ''}")
    else:
        position = hops.index(gw.id) + 1
        turn = f" (its weighted turn, weight {gw.weight})" if weighted_turn else ""
        view.update(position=position, detail=f"attempt {position}{turn}")


def _gateway(ctx: DryRunContext, verdict: GatewayVerdict, caller: str, callee: str
             ) -> dict[str, Any]:
    gw = verdict.gateway
    view: dict[str, Any] = {
        "id": gw.id, "name": gw.name, "enabled": gw.enabled,
        "verdict": "in" if verdict.reason == IN_ROUTE else "out",
        "reason": verdict.reason, "detail": verdict.detail, "position": verdict.position,
        "prefixes": list(gw.prefixes), "prefix": verdict.prefix, "prefix_mode": gw.prefix_mode,
        "priority": gw.priority, "rank": verdict.rank, "order_by": verdict.order_by,
        "order": verdict.order, "capacity": gw.capacity,
        "current_calls": verdict.current_calls, "total_calls": verdict.total_calls,
        "load": round(verdict.load, 4), "retry_after_until": verdict.held_until,
        "host": gw.host, "port": gw.port, "transport": gw.transport,
        "target": None, "dns": None, "lists": [], "stages": [], "sent": None,
    }
    if verdict.prefix is None:
        return view  # its prefixes do not match: no numbers of its own to show
    caller_out, callee_out, steps = gw.numbers.explain_rewrite(caller, callee,
                                                              ctx.numbers.transforms)
    pai, pai_step = gw.numbers.explain_pai(caller_out)
    view["stages"] = [asdict(step) for step in (*steps, pai_step)]
    # A PAI rule that leaves no number sends no header (calls/dialling.py).
    view["sent"] = {"caller": caller_out, "callee": callee_out, "pai": pai or None}
    if is_ip(gw.host):
        view["target"] = f"{gw.host}:{gw.port or DEFAULT_PORT}"
    else:
        view["dns"] = _dns(ctx.peek_vendor(gw), gw)
        targets = view["dns"]["targets"]
        view["target"] = targets[0] if targets else None
    return view


def _dns(plan: Plan, gw: RoutingGateway) -> dict[str, Any]:
    """A DNS-named vendor's targets as the cache has them (docs/failover.md)."""
    targets = [str(target) for target in plan.targets]
    if not plan.complete:
        state, detail = "unresolved", ("not in the DNS cache yet: a call would look it up "
                                       "before its INVITE")
    elif not targets:
        state, detail = "no_address", (f"no address ({plan.failure or 'no records'}): the "
                                       "attempt would fail as dns_failure and the route go on")
    else:
        state = "stale" if plan.stale else "cached"
        detail = "tried in this order (SRV weights draw the order again for every call)" \
            if len(targets) > 1 else ""
    return {"name": gw.host, "state": state, "targets": targets, "detail": detail}
