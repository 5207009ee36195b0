"""The number rules of one gateway or phone, and the numbers stages of a call.

``docs/numbers.md`` ("Order of operations") is the specification: mapping-side dial
plans and transform give the platform numbers; the mapping side's lists check them;
routing uses the platform callee; each routing gateway attempt applies its own dial
plans, transform and P-Asserted-Identity plan to the platform numbers afresh.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from b2bua.numbers.dialplan import cached_plan
from b2bua.numbers.lists import GroupRule, NumberGroups, PrefixRule, Side
from b2bua.numbers.transform import TransformTable


@dataclass(frozen=True, slots=True)
class NumberStep:
    """One numbers stage as the routing dry run shows it."""

    stage: str  # the field: caller_dial_plan, callee_transform, pai_dial_plan...
    number: str  # caller, callee or pai
    input: str
    output: str
    rule: str | None  # the dial plan rule or transform row applied; None: none was
    detail: str


@dataclass(frozen=True, slots=True)
class ListCheck:
    """One black/white list check as the routing dry run shows it."""

    check: str  # caller_groups, callee_groups or callee_prefixes
    number: str
    rule: str  # the list in words ("" when there is none)
    verdict: str  # pass, refuse, or none (no restriction)
    decided_by: str | None  # the group holding the number, or the prefix it starts with
    reason: str | None  # the refusal as the CDR words it


@dataclass(frozen=True, slots=True)
class NumberRules:
    caller_dial_plan: str = ""
    callee_dial_plan: str = ""
    pai_dial_plan: str = ""
    caller_transform: bool = False
    callee_transform: bool = False
    caller_groups: GroupRule = field(default_factory=GroupRule)
    callee_groups: GroupRule = field(default_factory=GroupRule)
    callee_prefixes: PrefixRule = field(default_factory=PrefixRule)

    def rewrite(self, caller: str, callee: str, transforms: TransformTable
                ) -> tuple[str, str]:
        """Dial plans, then the transform table where switched on."""
        if self.caller_dial_plan:
            caller = cached_plan(self.caller_dial_plan).apply(caller)
        if self.callee_dial_plan:
            callee = cached_plan(self.callee_dial_plan).apply(callee)
        if self.caller_transform:
            caller = transforms.apply(caller)
        if self.callee_transform:
            callee = transforms.apply(callee)
        return caller, callee

    def pai(self, caller: str) -> str | None:
        """The P-Asserted-Identity number, or None when the gateway sends none."""
        if not self.pai_dial_plan:
            return None
        return cached_plan(self.pai_dial_plan).apply(caller)

    def refusal(self, caller: str, callee: str, groups: NumberGroups) -> str | None:
        """Why the black/white lists refuse these numbers, or None."""
        return (self.caller_groups.refusal(caller, groups, "caller")
                or self.callee_groups.refusal(callee, groups, "callee")
                or self.callee_prefixes.refusal(callee, "callee"))

    # -- the routing dry run: the same steps, each with what decided it ------------------

    def explain_rewrite(self, caller: str, callee: str, transforms: TransformTable,
                        rng: random.Random | None = None
                        ) -> tuple[str, str, tuple[NumberStep, ...]]:
        """``rewrite`` stage by stage: the numbers out, and each stage's input, output and
        the rule that applied."""
        caller_plan = _dial_step("caller_dial_plan", "caller", self.caller_dial_plan, caller,
                                 rng)
        callee_plan = _dial_step("callee_dial_plan", "callee", self.callee_dial_plan, callee,
                                 rng)
        caller_row = _transform_step("caller_transform", "caller", self.caller_transform,
                                     caller_plan.output, transforms)
        callee_row = _transform_step("callee_transform", "callee", self.callee_transform,
                                     callee_plan.output, transforms)
        return (caller_row.output, callee_row.output,
                (caller_plan, callee_plan, caller_row, callee_row))

    def explain_pai(self, caller: str, rng: random.Random | None = None
                    ) -> tuple[str | None, NumberStep]:
        """``pai`` with its stage: the P-Asserted-Identity number, or None."""
        step = _dial_step("pai_dial_plan", "pai", self.pai_dial_plan, caller, rng)
        if not self.pai_dial_plan:
            return None, NumberStep(step.stage, step.number, caller, "", None,
                                    "no dial plan: no P-Asserted-Identity is sent")
        return step.output, step

    def explain_lists(self, caller: str, callee: str, groups: NumberGroups
                      ) -> tuple[ListCheck, ...]:
        """``refusal`` check by check, in its order, up to the first refusal."""
        checks: list[ListCheck] = []
        for check in (_group_check("caller_groups", self.caller_groups, caller, groups,
                                   "caller"),
                      _group_check("callee_groups", self.callee_groups, callee, groups,
                                   "callee"),
                      _prefix_check(self.callee_prefixes, callee)):
            checks.append(check)
            if check.verdict == "refuse":
                break
        return tuple(checks)


NO_RULES = NumberRules()


class NumberTables:
    """The transform table and the number groups, each replaced whole on reload
    (b2bua/storage/numbers.py reads them)."""

    def __init__(self) -> None:
        self.transforms = TransformTable()
        self.groups = NumberGroups()


def _dial_step(stage: str, number: str, plan_text: str, value: str,
               rng: random.Random | None) -> NumberStep:
    """A dial plan stage: ``DialPlan.apply`` split into its two steps."""
    if not plan_text:
        return NumberStep(stage, number, value, value, None, "no dial plan")
    rule = cached_plan(plan_text).rule_for(value)
    if rule is None:
        return NumberStep(stage, number, value, value, None, "no rule matches: unchanged")
    out = rule.rewrite(value, rng if rng is not None else random.Random())
    detail = "random digits (?) are drawn for every call" if "?" in rule.target else ""
    return NumberStep(stage, number, value, out, str(rule), detail)


def _transform_step(stage: str, number: str, on: bool, value: str,
                    transforms: TransformTable) -> NumberStep:
    if not on:
        return NumberStep(stage, number, value, value, None, "off")
    entry = transforms.lookup(value)
    if entry is None:
        return NumberStep(stage, number, value, value, None, "no transform row for it")
    return NumberStep(stage, number, value, entry.replacement,
                      f"{entry.number} -> {entry.replacement}", entry.memo)


def _group_check(check: str, rule: GroupRule, number: str, groups: NumberGroups,
                 side: Side) -> ListCheck:
    if not rule.groups:
        return ListCheck(check, number, "", "none", None, None)
    words = f"{rule.mode} " + ", ".join(f'"{name}"' for name in rule.groups)
    refused = rule.refusal(number, groups, side)
    hit = groups.first_containing(rule.groups, number)
    return ListCheck(check, number, words, "pass" if refused is None else "refuse", hit,
                     refused)


def _prefix_check(rule: PrefixRule, number: str) -> ListCheck:
    if not rule.allow and not rule.deny:
        return ListCheck("callee_prefixes", number, "", "none", None, None)
    words = "; ".join(f"{name} " + ", ".join(f'"{p}"' for p in prefixes)
                      for name, prefixes in (("deny", rule.deny), ("allow", rule.allow))
                      if prefixes)
    refused = rule.refusal(number, "callee")
    hit = rule.longest_denied(number) or rule.longest_allowed(number)
    return ListCheck("callee_prefixes", number, words,
                     "pass" if refused is None else "refuse", hit, refused)
