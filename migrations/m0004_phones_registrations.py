"""Phone accounts, their registrations (bindings), and phone columns on CDRs."""

from __future__ import annotations

from typing import Any

from migrations.m0003_gateways_cdrs import bump_triggers

VERSION = 4


def up(db: Any) -> None:
    db["phones"].create(
        {
            "id": int,
            "username": str,
            "password": str,
            "display_name": str,
            "capacity": int,
            "enabled": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"username", "password", "enabled"},
        defaults={"enabled": 1},
    )
    db["phones"].create_index(["username"], unique=True)
    bump_triggers(db, "phones")
    db["registrations"].create(
        {
            "id": int,
            "username": str,
            "contact": str,
            "transport": str,
            "source_host": str,
            "source_port": int,
            "nat": int,
            "expires_at": float,
            "registered_at": float,
            "user_agent": str,
            "call_id": str,
        },
        pk="id",
        not_null={"username", "contact", "transport", "source_host", "source_port",
                  "expires_at"},
    )
    db["registrations"].create_index(["username", "contact"], unique=True)
    db["registrations"].create_index(["expires_at"])
    db["cdrs"].add_column("phone", str)
    db["cdrs"].add_column("callee_phone", str)
