"""Number fields shared by gateways and phones, and the number tables' schemas."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from b2bua.numbers.dialplan import DialPlan, DialPlanError
from b2bua.numbers.lists import is_valid_number

GROUP_NAME = validate.Length(min=1, max=64)


def _dial_plan(value: str) -> None:
    try:
        DialPlan.parse(value)
    except DialPlanError as exc:
        raise ValidationError(str(exc)) from None


def _number(value: str) -> None:
    if not is_valid_number(value):
        raise ValidationError(f"{value!r}: a number is 1-64 of 0-9 A-Z a-z # + *")


def dial_plan(description: str) -> fields.String:
    return fields.String(load_default="", validate=_dial_plan,
                         metadata={"description": description + " (docs/numbers.md)"})


def groups(side: str) -> fields.List[Any]:
    return fields.List(fields.String(validate=GROUP_NAME), load_default=list,
                       validate=validate.Length(max=100),
                       metadata={"description": f"number groups checked on the {side}"})


def groups_mode(side: str) -> fields.String:
    return fields.String(load_default="deny", validate=validate.OneOf(["allow", "deny"]),
                         metadata={"description": f"allow: only {side}s in the groups; "
                                                  f"deny: none of them"})


def prefixes(description: str) -> fields.List[Any]:
    return fields.List(fields.String(validate=validate.Regexp(
        r"^[0-9A-Za-z#*+]{1,32}\Z", error="a prefix is 1-32 of 0-9 A-Z a-z # * +")),
        load_default=list, validate=validate.Length(max=10000),
        metadata={"description": description})


def transform(side: str) -> fields.Boolean:
    return fields.Boolean(load_default=False, metadata={
        "description": f"replace the {side} through the number transform table"})


class DialPlans(Schema):
    caller_dial_plan = dial_plan("rewrites the caller number")
    callee_dial_plan = dial_plan("rewrites the callee number")


class PaiPlan(Schema):
    pai_dial_plan = dial_plan("the caller number sent in P-Asserted-Identity; empty: no PAI")


class NumberLists(Schema):
    caller_transform = transform("caller")
    callee_transform = transform("callee")
    caller_groups = groups("caller")
    caller_groups_mode = groups_mode("caller")
    callee_groups = groups("callee")
    callee_groups_mode = groups_mode("callee")


class CalleePrefixes(Schema):
    callee_prefixes_allow = prefixes("callee prefixes allowed (empty: all)")
    callee_prefixes_deny = prefixes("callee prefixes refused")


NUMBER_JSON_COLUMNS = frozenset({"caller_groups", "callee_groups", "callee_prefixes_allow",
                                 "callee_prefixes_deny"})
NUMBER_BOOL_COLUMNS = frozenset({"caller_transform", "callee_transform"})


class NumberTransformSchema(Schema):
    id = fields.Integer(dump_only=True)
    number = fields.String(required=True, validate=_number,
                           metadata={"description": "the full number replaced (exact match)"})
    replacement = fields.String(required=True, validate=_number)
    memo = fields.String(load_default="", validate=validate.Length(max=200))
    created_at = fields.Float(dump_only=True)
    updated_at = fields.Float(dump_only=True)


class NumberGroupSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=GROUP_NAME)
    memo = fields.String(load_default="", validate=validate.Length(max=200))
    created_at = fields.Float(dump_only=True)
    updated_at = fields.Float(dump_only=True)


MAX_BULK = 100_000


class GroupNumbersSchema(Schema):
    numbers = fields.List(fields.String(validate=_number), required=True,
                          validate=validate.Length(min=1, max=MAX_BULK),
                          metadata={"description": f"up to {MAX_BULK} numbers per request"})

