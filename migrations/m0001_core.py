"""API tokens, stored parameter values, and the config change counters."""

from __future__ import annotations

from typing import Any

VERSION = 1


def up(db: Any) -> None:
    db["api_tokens"].create(
        {
            "id": int,
            "name": str,
            "role": str,
            "token_hash": str,
            "created_at": float,
            "revoked": int,
        },
        pk="id",
        not_null={"name", "role", "token_hash", "created_at"},
        defaults={"revoked": 0},
    )
    db["api_tokens"].create_index(["token_hash"], unique=True)
    db["parameters"].create(
        {"name": str, "value": str, "updated_at": float},
        pk="name",
        not_null={"value"},
    )
    # One counter per config table, bumped by triggers, so the engine can tell
    # which table changed with one cheap query instead of reloading everything.
    db["config_versions"].create({"table_name": str, "version": int}, pk="table_name")
    db["config_versions"].insert({"table_name": "parameters", "version": 0})
    for event in ("INSERT", "UPDATE", "DELETE"):
        db.execute(
            f"""CREATE TRIGGER parameters_{event.lower()}_bump AFTER {event} ON parameters
            BEGIN
              UPDATE config_versions SET version = version + 1
              WHERE table_name = 'parameters';
            END"""
        )
