"""Vendors by DNS name: a routing gateway's port may be left to DNS (NULL), and each CDR
attempt records the address it went to."""

from __future__ import annotations

from typing import Any

from migrations.m0003_gateways_cdrs import create_bump_triggers

VERSION = 12


def up(db: Any) -> None:
    # SQLite cannot drop NOT NULL in place: sqlite-utils rebuilds the table, which drops
    # its triggers with it, so the reload counter's are made again (the count goes on).
    db["routing_gateways"].transform(not_null={"port": False}, defaults={"port": None})
    for event in ("insert", "update", "delete"):
        db.execute(f"DROP TRIGGER IF EXISTS routing_gateways_{event}_bump")
    create_bump_triggers(db, "routing_gateways")
    db["cdr_attempts"].add_column("target", str)
