"""Number handling: dial plans, the number transform table, black/white lists.

All pure and immutable, built once per configuration load and shared by calls.
Semantics and the order the engine applies them in: docs/numbers.md.
"""

from b2bua.numbers.dialplan import (
    DialPlan,
    DialPlanError,
    LengthCondition,
    Rule,
    cached_plan,
)
from b2bua.numbers.lists import (
    GroupRule,
    NumberGroups,
    PrefixRule,
    is_valid_number,
    parse_list,
    parse_numbers,
)
from b2bua.numbers.transform import TransformEntry, TransformTable

__all__ = [
    "DialPlan",
    "DialPlanError",
    "GroupRule",
    "LengthCondition",
    "NumberGroups",
    "PrefixRule",
    "Rule",
    "TransformEntry",
    "TransformTable",
    "cached_plan",
    "is_valid_number",
    "parse_list",
    "parse_numbers",
]
