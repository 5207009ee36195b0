"""The number rules of one gateway or phone, and the numbers stages of a call.

``docs/numbers.md`` ("Order of operations") is the specification: mapping-side dial
plans and transform give the platform numbers; the mapping side's lists check them;
routing uses the platform callee; each routing gateway attempt applies its own dial
plans, transform and P-Asserted-Identity plan to the platform numbers afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from b2bua.numbers.dialplan import cached_plan
from b2bua.numbers.lists import GroupRule, NumberGroups, PrefixRule
from b2bua.numbers.transform import TransformTable


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


NO_RULES = NumberRules()


class NumberTables:
    """The transform table and the number groups, each replaced whole on reload
    (b2bua/storage/numbers.py reads them)."""

    def __init__(self) -> None:
        self.transforms = TransformTable()
        self.groups = NumberGroups()
