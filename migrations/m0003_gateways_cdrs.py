"""Mapping gateways (customer trunks), routing gateways (vendor trunks) and CDRs."""

from __future__ import annotations

from typing import Any

VERSION = 3

CONFIG_TABLES = ("mapping_gateways", "routing_gateways")


def bump_triggers(db: Any, table: str) -> None:
    """Count changes of a config table so the engine reloads it (see b2bua.config.live)."""
    db["config_versions"].insert({"table_name": table, "version": 0}, replace=True)
    create_bump_triggers(db, table)


def create_bump_triggers(db: Any, table: str) -> None:
    for event in ("INSERT", "UPDATE", "DELETE"):
        db.execute(
            f"""CREATE TRIGGER {table}_{event.lower()}_bump AFTER {event} ON {table}
            BEGIN
              UPDATE config_versions SET version = version + 1 WHERE table_name = '{table}';
            END"""
        )


def up(db: Any) -> None:
    db["mapping_gateways"].create(
        {
            "id": int,
            "name": str,
            "auth_mode": str,
            "ips": str,
            "port": int,
            "username": str,
            "password": str,
            "capacity": int,
            "enabled": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"name", "auth_mode", "ips", "enabled"},
        defaults={"ips": "[]", "enabled": 1},
    )
    db["mapping_gateways"].create_index(["name"], unique=True)
    db["routing_gateways"].create(
        {
            "id": int,
            "name": str,
            "host": str,
            "port": int,
            "transport": str,
            "prefixes": str,
            "priority": int,
            "prefix_mode": str,
            "capacity": int,
            "enabled": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"name", "host", "port", "transport", "prefixes", "priority", "prefix_mode",
                  "enabled"},
        defaults={"prefixes": "[]", "priority": 0, "prefix_mode": "terminate", "enabled": 1,
                  "transport": "udp", "port": 5060},
    )
    db["routing_gateways"].create_index(["name"], unique=True)
    for table in CONFIG_TABLES:
        bump_triggers(db, table)
    db["cdrs"].create(
        {
            "id": int,
            "call_id_in": str,
            "call_id_out": str,
            "caller": str,
            "callee": str,
            "source": str,
            "mapping_gateway_id": int,
            "mapping_gateway": str,
            "routing_gateway_id": int,
            "routing_gateway": str,
            "start_at": float,
            "ringing_at": float,
            "answer_at": float,
            "end_at": float,
            "duration": float,
            "final_code": int,
            "final_reason": str,
            "hangup_by": str,
            "termination_reason": str,
        },
        pk="id",
        not_null={"call_id_in", "start_at", "end_at", "final_code"},
    )
    db["cdrs"].create_index(["start_at"])
    db["cdrs"].create_index(["mapping_gateway_id", "start_at"])
    db["cdrs"].create_index(["routing_gateway_id", "start_at"])
