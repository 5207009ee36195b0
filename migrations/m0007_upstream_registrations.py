"""Registration of the softswitch to vendors: one optional registration per routing gateway."""

from __future__ import annotations

from typing import Any

from migrations.m0003_gateways_cdrs import bump_triggers

VERSION = 7


def up(db: Any) -> None:
    db["gateway_registrations"].create(
        {
            "id": int,
            "routing_gateway_id": int,
            "enabled": int,
            "registrar": str,
            "username": str,
            "auth_username": str,
            "password": str,
            "host_name": str,
            "expire": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        foreign_keys=[("routing_gateway_id", "routing_gateways", "id")],
        not_null={"routing_gateway_id", "enabled", "username"},
        defaults={"enabled": 1},
    )
    db["gateway_registrations"].create_index(["routing_gateway_id"], unique=True)
    bump_triggers(db, "gateway_registrations")
    # A call a vendor sends to our registered contact names that vendor as its origin.
    db["cdrs"].add_column("origin_vendor", str)
