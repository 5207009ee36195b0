"""Numbers: dial plans, transform switches and lists on gateways and phones; the number
transform table; named number groups; the numbers of a CDR at each stage."""

from __future__ import annotations

from typing import Any

from migrations.m0003_gateways_cdrs import bump_triggers

VERSION = 6

GROUP_FIELDS = {"caller_groups": "[]", "caller_groups_mode": "deny", "callee_groups": "[]",
                "callee_groups_mode": "deny"}


def up(db: Any) -> None:
    mapping = db["mapping_gateways"]
    routing = db["routing_gateways"]
    for table in (mapping, routing):
        for column in ("caller_dial_plan", "callee_dial_plan"):
            table.add_column(column, str, not_null_default="")
        for column in ("caller_transform", "callee_transform"):
            table.add_column(column, int, not_null_default=0)
        for column, default in GROUP_FIELDS.items():
            table.add_column(column, str, not_null_default=default)
    mapping.add_column("callee_prefixes_allow", str, not_null_default="[]")
    mapping.add_column("callee_prefixes_deny", str, not_null_default="[]")
    routing.add_column("pai_dial_plan", str, not_null_default="")
    for column in ("caller_dial_plan", "callee_dial_plan"):
        db["phones"].add_column(column, str, not_null_default="")
    db["number_transforms"].create(
        {"id": int, "number": str, "replacement": str, "memo": str, "created_at": float,
         "updated_at": float},
        pk="id", not_null={"number", "replacement"}, defaults={"memo": ""},
    )
    db["number_transforms"].create_index(["number"], unique=True)
    bump_triggers(db, "number_transforms")
    db["number_groups"].create(
        {"id": int, "name": str, "memo": str, "created_at": float, "updated_at": float},
        pk="id", not_null={"name"}, defaults={"memo": ""},
    )
    db["number_groups"].create_index(["name"], unique=True)
    db["number_group_members"].create(
        {"group_id": int, "number": str},
        pk=("group_id", "number"),
        foreign_keys=[("group_id", "number_groups", "id")],
    )
    bump_triggers(db, "number_groups")
    # Members change the groups the engine holds: count them under the groups' counter.
    for event in ("INSERT", "DELETE"):
        db.execute(
            f"""CREATE TRIGGER number_group_members_{event.lower()}_bump AFTER {event}
            ON number_group_members
            BEGIN
              UPDATE config_versions SET version = version + 1
              WHERE table_name = 'number_groups';
            END"""
        )
    for column in ("caller_routed", "callee_routed", "caller_sent", "callee_sent"):
        db["cdrs"].add_column(column, str)
