"""The routing dry run (b2bua.calls.dryrun.explain_call): each stage with what decided
it, and, for random switches, exactly what a real call's core does with the same state:
the vendors it dials in order and the numbers each INVITE carries."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from callharness import START, CallHarness, Context, invite_request, vendor
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.calls.dryrun import Admission, explain_call
from b2bua.calls.endpoints import Destination, Origin
from b2bua.numbers.lists import GroupRule, NumberGroups, PrefixRule
from b2bua.numbers.rules import NumberRules
from b2bua.numbers.transform import TransformTable
from b2bua.registrar.bindings import Binding
from b2bua.routing.dns import Plan, Target
from b2bua.routing.gateways import RoutingGateway
from b2bua.routing.select import RouteExplanation, explain_route
from b2bua.sip.peer import Peer

CUSTOMER = Origin("gateway", 7, "custA", None)
OPEN = Admission(enabled=True, current_calls=0)


@dataclasses.dataclass
class DryContext(Context):
    """The harness's switch, also answering the dry run's questions from the same state
    its ``plan_route`` reads (no calls so far anywhere: the harness counts none)."""

    def explain_route(self, callee: str, now: float) -> RouteExplanation:
        return explain_route(callee, self.gateways, lambda i: self.occupied.get(i, 0),
                             lambda i: 0, lambda i: self.held_until.get(i, 0.0), now)

    def peek_vendor(self, gw: RoutingGateway) -> Plan:
        return self.vendor_plan(gw)


def v(gid: int, prefix: str = "", priority: int = 0, mode: str = "terminate",
      **fields: Any) -> RoutingGateway:
    """The harness's vendor ``v<gid>`` with its prefix_mode (and name, when given)."""
    name = fields.pop("name", f"v{gid}")
    return dataclasses.replace(vendor(gid, prefix, priority, **fields), prefix_mode=mode,
                               name=name)


def dry(ctx: DryContext, caller: str = "1001", callee: str = "4420001",
        origin: Origin = CUSTOMER, admission: Admission = OPEN) -> dict[str, Any]:
    return explain_call(ctx, origin, caller, callee, START, admission)


def gateway(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in result["gateways"] if g["name"] == name)


# -- the numbers stages -----------------------------------------------------------------------


def test_the_worked_example_of_docs_numbers() -> None:
    """docs/numbers.md, "Worked example", stage by stage."""
    ctx = DryContext(gateways=[v(1, "86", name="vendorCN", numbers=NumberRules(
        callee_dial_plan="*:+*", caller_dial_plan="*{E12}:+*", pai_dial_plan="+:"))])
    ctx.numbers.transforms = TransformTable([("862150001234", "862150009999", "main DID")])
    ctx.numbers.groups = NumberGroups({"fraud": ["8610000"]})
    origin = dataclasses.replace(CUSTOMER, numbers=NumberRules(
        caller_dial_plan="0:86*", callee_dial_plan="00:", caller_transform=True,
        caller_groups=GroupRule(("fraud",), "deny"),
        callee_prefixes=PrefixRule(deny=("86900",))))
    result = dry(ctx, "02150001234", "008613800138000", origin)
    assert [(s["stage"], s["input"], s["output"], s["rule"]) for s in result["stages"]] == [
        ("caller_dial_plan", "02150001234", "862150001234", "0:86*"),
        ("callee_dial_plan", "008613800138000", "8613800138000", "00:"),
        ("caller_transform", "862150001234", "862150009999", "862150001234 -> 862150009999"),
        ("callee_transform", "8613800138000", "8613800138000", None),
    ]
    assert result["stages"][2]["detail"] == "main DID"
    assert result["stages"][3]["detail"] == "off"
    assert result["stages"][0]["side"] == "mapping" and result["stages"][0]["gateway"] == "custA"
    assert result["platform"] == {"caller": "862150009999", "callee": "8613800138000"}
    assert [(c["check"], c["verdict"], c["rule"]) for c in result["lists"]] == [
        ("caller_groups", "pass", 'deny "fraud"'), ("callee_groups", "none", ""),
        ("callee_prefixes", "pass", 'deny "86900"')]
    vendor_cn = gateway(result, "vendorCN")
    assert vendor_cn["verdict"] == "in" and vendor_cn["position"] == 1
    assert vendor_cn["sent"] == {"caller": "+862150009999", "callee": "+8613800138000",
                                 "pai": "862150009999"}
    assert [(s["stage"], s["rule"]) for s in vendor_cn["stages"]] == [
        ("caller_dial_plan", "*{E12}:+*"), ("callee_dial_plan", "*:+*"),
        ("caller_transform", None), ("callee_transform", None), ("pai_dial_plan", "+:")]
    assert result["route"] == [{"position": 1, "id": 1, "name": "vendorCN",
                                "target": "203.0.113.1:5060", "caller": "+862150009999",
                                "callee": "+8613800138000", "pai": "862150009999"}]
    assert result["result"] == {"outcome": "vendors", "stage": "routing", "code": None,
                                "by_lists": False, "reason": "1 vendor to try in turn"}


def test_a_black_list_refuses_and_the_dry_run_stops_there() -> None:
    ctx = DryContext(gateways=[vendor(1, "86")])
    origin = dataclasses.replace(CUSTOMER, numbers=NumberRules(
        callee_dial_plan="00:", callee_prefixes=PrefixRule(allow=("86",), deny=("86900",))))
    result = dry(ctx, callee="0086900123456", origin=origin)
    assert result["platform"]["callee"] == "86900123456"
    assert result["lists"][-1] == {
        "gateway": "custA", "check": "callee_prefixes", "number": "86900123456",
        "rule": 'deny "86900"; allow "86"', "verdict": "refuse", "decided_by": "86900",
        "reason": 'callee prefix "86900" denied'}
    assert result["result"] == {"outcome": "refused", "stage": "lists", "code": 403,
                                "by_lists": True, "reason": 'callee prefix "86900" denied'}
    assert result["gateways"] == [] and result["route"] == []


def test_the_checks_stop_at_the_first_refusal_and_name_the_group() -> None:
    ctx = DryContext(gateways=[vendor(1)])
    ctx.numbers.groups = NumberGroups({"vip": ["1001"], "bad": ["4420001"]})
    origin = dataclasses.replace(CUSTOMER, numbers=NumberRules(
        caller_groups=GroupRule(("gold", "vip"), "allow"),
        callee_groups=GroupRule(("bad",), "deny"), callee_prefixes=PrefixRule(deny=("44",))))
    result = dry(ctx, origin=origin)
    assert [(c["check"], c["verdict"], c["decided_by"]) for c in result["lists"]] == [
        ("caller_groups", "pass", "vip"), ("callee_groups", "refuse", "bad")]
    assert result["result"]["reason"] == 'callee in deny group "bad"'


def test_random_digits_are_said_to_be_drawn_per_call() -> None:
    rules = NumberRules(callee_dial_plan="44:??*")
    _caller, callee, steps = rules.explain_rewrite("1", "4420", TransformTable())
    assert re.fullmatch(r"\d\d20", callee)
    assert steps[1].detail == "random digits (?) are drawn for every call"


# -- admission --------------------------------------------------------------------------------


def test_admission_refusals_come_first() -> None:
    ctx = DryContext(gateways=[vendor(1)])
    off = dry(ctx, admission=Admission(enabled=False, current_calls=0))
    assert off["result"]["stage"] == "admission" and off["result"]["code"] is None
    assert off["result"]["reason"].startswith('mapping gateway "custA" is disabled')
    assert off["stages"] == [] and off["platform"] is None
    full = dry(ctx, origin=dataclasses.replace(CUSTOMER, capacity=2),
               admission=Admission(enabled=True, current_calls=2))
    assert full["result"] == {"outcome": "refused", "stage": "admission", "code": 503,
                              "by_lists": False,
                              "reason": 'mapping gateway "custA" at capacity: 2 of 2 calls'}
    assert full["origin"] == {"kind": "mapping_gateway", "id": 7, "name": "custA",
                              "enabled": True, "current_calls": 2, "capacity": 2}
    busy = dry(ctx, admission=Admission(enabled=True, current_calls=0, overloaded=True))
    assert busy["result"]["code"] == 503 and "overloaded" in busy["result"]["reason"]


# -- phones -----------------------------------------------------------------------------------

BINDING = Binding("4420001", "sip:alice@192.0.2.50:5062", Peer("udp", "192.0.2.50", 5062),
                  True, START + 3600, START, "phone/1", "reg-1")


def test_a_registered_phone_takes_the_call_and_no_vendor_is_looked_at() -> None:
    phone = Destination(BINDING.source, BINDING.contact, "<sip:4420001@198.51.100.1>",
                        binding=BINDING)
    ctx = DryContext(gateways=[vendor(1, "44")], phones={"4420001": (phone, 0, "")})
    result = dry(ctx)
    assert result["phone"] == {"username": "4420001", "reachable": True,
                               "contact": "sip:alice@192.0.2.50:5062",
                               "source": "192.0.2.50:5062", "nat": True, "code": None,
                               "reason": None}
    assert result["result"]["outcome"] == "phone" and result["gateways"] == []


def test_an_unregistered_phone_is_what_the_caller_hears() -> None:
    ctx = DryContext(gateways=[vendor(1, "44")],
                     phones={"4420001": (None, 480, "phone not registered")})
    result = dry(ctx)
    assert result["phone"]["reachable"] is False and result["phone"]["code"] == 480
    assert result["result"] == {"outcome": "refused", "stage": "phone", "code": 480,
                                "by_lists": False, "reason": "phone not registered"}


def test_a_phone_as_the_origin() -> None:
    origin = Origin("phone", 3, "2001", 1, NumberRules(callee_dial_plan="0:44"))
    result = dry(DryContext(gateways=[vendor(1, "44")]), callee="020001", origin=origin)
    assert result["origin"]["kind"] == "phone"
    assert result["stages"][1]["side"] == "phone"
    assert result["route"][0]["callee"] == "4420001"
    full = dry(DryContext(gateways=[vendor(1, "44")]), origin=origin,
               admission=Admission(enabled=True, current_calls=1))
    assert full["result"]["reason"] == 'phone "2001" at capacity: 1 of 1 calls'


# -- the vendors --------------------------------------------------------------------------------


def test_every_vendor_is_in_or_out_with_its_reason() -> None:
    deny = NumberRules(callee_prefixes=PrefixRule(deny=("4420",)))
    gateways = [
        v(1, "4420", 0, "continue", capacity=1),  # full
        v(2, "4420", 1, "continue"),  # held
        v(3, "4420", 2, "continue", numbers=deny),  # its lists refuse
        v(4, "442", 0, "continue"),  # in, first
        v(5, "44", 0, "terminate"),  # in, second
        v(6, "44", 1, "continue"),  # beyond the switch limit
        vendor(7, "4", 0),  # cut by 5's terminate
        vendor(8, "33", 0),  # no match
        vendor(9, "44", 0, enabled=False),  # disabled
    ]
    ctx = DryContext(gateways=gateways, occupied={1: 1}, held_until={2: START + 90})
    ctx.params.values["SS_GATEWAY_SWITCH_LIMIT"] = 2
    result = dry(ctx)
    reasons = {g["name"]: (g["verdict"], g["reason"], g["position"])
               for g in result["gateways"]}
    assert reasons == {
        "v1": ("out", "full", None), "v2": ("out", "retry_after", None),
        "v3": ("out", "refused_by_lists", None), "v4": ("in", "route", 1),
        "v5": ("in", "route", 2), "v6": ("out", "switch_limit", None),
        "v7": ("out", "cut_by_terminate", None), "v8": ("out", "no_prefix_match", None),
        "v9": ("out", "disabled", None)}
    assert gateway(result, "v1")["detail"] == "at capacity: 1 of 1 calls"
    assert gateway(result, "v2")["retry_after_until"] == START + 90
    assert gateway(result, "v3")["detail"] == \
        'routing gateway "v3": callee prefix "4420" denied'
    assert gateway(result, "v3")["lists"][-1]["decided_by"] == "4420"
    assert gateway(result, "v6")["detail"] == \
        "SS_GATEWAY_SWITCH_LIMIT 2: the call ends after 2 attempts"
    assert gateway(result, "v8")["sent"] is None and gateway(result, "v8")["stages"] == []
    assert [r["name"] for r in result["route"]] == ["v4", "v5"]


def test_when_every_vendors_lists_refuse_the_call_gets_403() -> None:
    deny = NumberRules(caller_groups=GroupRule(("blocked",), "deny"))
    ctx = DryContext(gateways=[vendor(1, "44", numbers=deny)])
    ctx.numbers.groups = NumberGroups({"blocked": ["1001"]})
    result = dry(ctx)
    assert result["result"] == {
        "outcome": "refused", "stage": "routing", "code": 403, "by_lists": True,
        "reason": 'routing gateway "v1": caller in deny group "blocked"'}


def test_no_match_is_404_and_all_unusable_503() -> None:
    assert dry(DryContext(gateways=[vendor(1, "33")]))["result"]["code"] == 404
    full = dry(DryContext(gateways=[vendor(1, "44", capacity=0)]))["result"]
    assert (full["code"], full["reason"]) == (
        503, "every matching routing gateway is disabled, full or unavailable")


def test_a_call_from_a_vendor_is_never_sent_back_to_it() -> None:
    gateways = [vendor(1, "44"), vendor(2, "44", 1)]
    result = dry(DryContext(gateways=gateways), origin=Origin.vendor(gateways[0]))
    assert gateway(result, "v1")["reason"] == "came_from"
    assert [r["name"] for r in result["route"]] == ["v2"]


def test_a_dns_named_vendor_shows_its_cached_targets() -> None:
    named = dataclasses.replace(vendor(1, "44"), host="sip.vendor.test", port=None)
    cold = dataclasses.replace(vendor(2, "44", 1), host="cold.vendor.test", port=None)
    gone = dataclasses.replace(vendor(3, "44", 2), host="gone.vendor.test", port=None)
    ctx = DryContext(gateways=[named, cold, gone], plans={
        1: Plan(targets=(Target("a.vendor.test", "192.0.2.7", 5070),
                         Target("b.vendor.test", "192.0.2.8", 5060))),
        2: Plan(missing=(("cold.vendor.test", "A"),)),
        3: Plan(failure="no such name")})
    result = dry(ctx)
    first = gateway(result, "v1")
    assert first["dns"]["state"] == "cached" and first["target"] == "192.0.2.7:5070"
    assert first["dns"]["targets"] == ["192.0.2.7:5070", "192.0.2.8:5060"]
    assert gateway(result, "v2")["dns"]["state"] == "unresolved"
    assert gateway(result, "v2")["target"] is None
    assert gateway(result, "v3")["dns"]["state"] == "no_address"
    assert "no such name" in gateway(result, "v3")["dns"]["detail"]
    assert gateway(result, "v3")["verdict"] == "in"  # dialled, and fails as dns_failure


# -- the numbers' explanation is the rewrite ---------------------------------------------------

RULES = st.sampled_from(["", "*:9*", "0:86*", "00:", "44:+44", "1{E4}:x*", "*{L3}:sc*",
                         "4:$$*", "0086:,00:+", "*:*"])
NUMBERS = st.text(alphabet="01234", min_size=1, max_size=6)


@st.composite
def number_rules(draw: st.DrawFn) -> NumberRules:
    plans = NumberRules(
        caller_dial_plan=draw(RULES), callee_dial_plan=draw(RULES), pai_dial_plan=draw(RULES),
        caller_transform=draw(st.booleans()), callee_transform=draw(st.booleans()))
    if draw(st.integers(0, 2)):  # two in three without lists, so that calls get through
        return plans
    return dataclasses.replace(
        plans,
        caller_groups=GroupRule(tuple(draw(st.lists(st.sampled_from(["g1", "g2"]),
                                                    max_size=2, unique=True))),
                                draw(st.sampled_from(["allow", "deny"]))),
        callee_groups=GroupRule(tuple(draw(st.lists(st.sampled_from(["g1", "g3"]),
                                                    max_size=2, unique=True))),
                                draw(st.sampled_from(["allow", "deny"]))),
        callee_prefixes=PrefixRule(tuple(draw(st.lists(NUMBERS.map(lambda n: n[:2]),
                                                       max_size=2, unique=True))),
                                   tuple(draw(st.lists(NUMBERS.map(lambda n: n[:3]),
                                                       max_size=2, unique=True)))))


TRANSFORMS = TransformTable([("9", "12"), ("001", "4"), ("4420", "443")])
GROUPS = NumberGroups({"g1": ["1", "9", "4420"], "g2": ["00"], "g3": ["441"]})


@settings(max_examples=300, deadline=None)
@given(number_rules(), NUMBERS, NUMBERS)
def test_the_explained_stages_end_where_the_rewrite_does(rules: NumberRules, caller: str,
                                                         callee: str) -> None:
    caller_out, callee_out, steps = rules.explain_rewrite(caller, callee, TRANSFORMS)
    assert (caller_out, callee_out) == rules.rewrite(caller, callee, TRANSFORMS)
    assert [s.stage for s in steps] == ["caller_dial_plan", "callee_dial_plan",
                                        "caller_transform", "callee_transform"]
    assert steps[0].input == caller and steps[2].input == steps[0].output
    assert steps[1].input == callee and steps[3].input == steps[1].output
    pai, step = rules.explain_pai(caller_out)
    assert pai == rules.pai(caller_out)
    assert step.stage == "pai_dial_plan"
    checks = rules.explain_lists(caller_out, callee_out, GROUPS)
    refusals = [c.reason for c in checks if c.verdict == "refuse"]
    assert refusals == ([] if rules.refusal(caller_out, callee_out, GROUPS) is None
                        else [rules.refusal(caller_out, callee_out, GROUPS)])
    assert all(c.verdict != "refuse" for c in checks[:-1])


# -- the dry run is what the call does ---------------------------------------------------------

PAI = re.compile(r"<sip:([^@]*)@")


@st.composite
def switches(draw: st.DrawFn) -> tuple[DryContext, Origin, str, str]:
    count = draw(st.integers(0, 6))
    gateways = [
        v(i, draw(st.sampled_from(["", "4", "44", "442", "45"])), draw(st.integers(0, 2)),
          draw(st.sampled_from(["terminate", "continue"])),
          capacity=draw(st.none() | st.integers(0, 2)),
          enabled=draw(st.sampled_from([True, True, True, False])),
          numbers=draw(number_rules()))
        for i in range(1, count + 1)
    ]
    ctx = DryContext(gateways=gateways,
                     occupied={g.id: draw(st.integers(0, 2)) for g in gateways},
                     held_until={g.id: START + draw(st.sampled_from([-5.0, 0.0, 30.0]))
                                 for g in gateways})
    ctx.numbers.transforms = TRANSFORMS
    ctx.numbers.groups = GROUPS
    ctx.params.values["SS_GATEWAY_SWITCH_LIMIT"] = draw(st.none() | st.integers(1, 3))
    # The origin's callee plans keep the callee routable (44...) more often than not.
    origin = dataclasses.replace(CUSTOMER, numbers=dataclasses.replace(
        draw(number_rules()), callee_dial_plan=draw(st.sampled_from(
            ["", "*:*", "44:44", "4{G2}:4*", "*:9*"]))))
    return ctx, origin, draw(NUMBERS), "44" + draw(st.text(alphabet="0123", max_size=3))


@settings(max_examples=200, deadline=None)
@given(switches())
def test_the_dry_run_dials_what_the_call_dials(
        switch: tuple[DryContext, Origin, str, str]) -> None:
    ctx, origin, caller, callee = switch
    result = explain_call(ctx, origin, caller, callee, START, OPEN)
    h = CallHarness(ctx, invite_request(callee, caller), origin=origin)
    seq = 0
    while len(h.call.attempts) > seq:  # every vendor fails: the next one is dialled
        seq += 1
        invite = h.invite_of(seq)
        # A number stripped to nothing: a URI without a user part (RFC 3261 25.1).
        assert (invite.ruri.user or "") == result["route"][seq - 1]["callee"]
        assert (invite.from_.uri.user or "") == result["route"][seq - 1]["caller"]
        pai = invite.get("P-Asserted-Identity")
        assert (PAI.match(pai).group(1) if pai else None) == result["route"][seq - 1]["pai"]
        h.answer(seq, 503)
    assert [a.gateway_name for a in h.call.attempts] == [r["name"] for r in result["route"]]
    if result["result"]["outcome"] == "refused":
        assert h.call.attempts == []
        assert h.cdr.final_code == result["result"]["code"]
        assert h.cdr.termination_reason == result["result"]["reason"]
    else:
        assert result["route"] and result["result"]["outcome"] == "vendors"
    assert result["platform"] == {"caller": h.call.caller_routed,
                                  "callee": h.call.callee_routed}


def test_a_number_stripped_to_nothing_is_a_uri_without_a_user() -> None:
    """A vendor's rules that leave no caller (and no PAI): the INVITE's From has no user
    part (``sip:host``, RFC 3261 25.1; ``sip:@host`` is no URI) and no PAI is sent, as
    the dry run says."""
    ctx = DryContext(gateways=[v(1, "44", numbers=NumberRules(caller_dial_plan="1001:",
                                                              pai_dial_plan="1001:"))])
    result = dry(ctx)
    assert result["route"][0]["caller"] == "" and result["route"][0]["pai"] is None
    h = CallHarness(ctx, invite_request("4420001", "1001"), origin=CUSTOMER)
    invite = h.invite_of(1)
    assert invite.from_.uri.user is None and invite.from_.uri.host == h.ctx.advertised_host
    assert invite.get("P-Asserted-Identity") is None
    assert invite.ruri.user == "4420001"
