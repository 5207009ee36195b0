"""The number tables the engine reads (the transform table, the number groups), and the
number-rule columns that gateways and phones share."""

from __future__ import annotations

import json
from typing import Any

from b2bua.numbers.lists import GroupRule, NumberGroups, PrefixRule
from b2bua.numbers.rules import NumberRules
from b2bua.numbers.transform import TransformTable
from b2bua.storage.backend import Database, Row


def number_rules(row: Row) -> NumberRules:
    """A gateway's or a phone's number rules from its row; a column the table lacks
    leaves that rule off."""

    def text(name: str) -> str:
        return str(row.get(name) or "")

    def names(name: str) -> tuple[str, ...]:
        return tuple(json.loads(row.get(name) or "[]"))

    def mode(name: str) -> Any:
        return text(name) or "deny"

    return NumberRules(
        caller_dial_plan=text("caller_dial_plan"),
        callee_dial_plan=text("callee_dial_plan"),
        pai_dial_plan=text("pai_dial_plan"),
        caller_transform=bool(row.get("caller_transform")),
        callee_transform=bool(row.get("callee_transform")),
        caller_groups=GroupRule(names("caller_groups"), mode("caller_groups_mode")),
        callee_groups=GroupRule(names("callee_groups"), mode("callee_groups_mode")),
        callee_prefixes=PrefixRule(names("callee_prefixes_allow"),
                                   names("callee_prefixes_deny")),
    )


def transform_table(database: Database) -> TransformTable:
    return TransformTable(
        (str(r["number"]), str(r["replacement"]), str(r["memo"] or ""))
        for r in database.rows("SELECT number, replacement, memo FROM number_transforms"))


def number_groups(database: Database) -> NumberGroups:
    """Every group by name, with its members; a group without members is still there
    (empty), so a rule naming it finds it."""
    rows = database.rows(
        "SELECT g.name, m.number FROM number_groups g "
        "LEFT JOIN number_group_members m ON m.group_id = g.id")
    members: dict[str, list[str]] = {}
    for row in rows:
        numbers = members.setdefault(str(row["name"]), [])
        if row["number"] is not None:
            numbers.append(str(row["number"]))
    return NumberGroups(members)
