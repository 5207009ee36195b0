"""A routing gateway's registration to its vendor, as the operator set it (one row per
gateway at most; the engine's live state is kept elsewhere)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from b2bua.storage.backend import Database, Row

# What the operator sets, in the table's order; ``enabled`` is stored as 0 or 1.
SETTINGS = ("enabled", "registrar", "username", "auth_username", "password", "host_name",
            "expire")


def get(db: Database, routing_gateway_id: int) -> Row | None:
    """The stored row (the password included), or None."""
    return db.row("SELECT * FROM gateway_registrations WHERE routing_gateway_id = ?",
                  (routing_gateway_id,))


def put(db: Database, routing_gateway_id: int, settings: Mapping[str, Any],
        now: float) -> None:
    """Create or replace the gateway's registration with ``settings`` (every one of
    :data:`SETTINGS`)."""
    values = [int(settings["enabled"]), *(settings[k] for k in SETTINGS[1:])]
    db.execute(
        "INSERT INTO gateway_registrations (routing_gateway_id, enabled, registrar, "
        "username, auth_username, password, host_name, expire, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (routing_gateway_id) DO UPDATE "
        "SET enabled = excluded.enabled, registrar = excluded.registrar, "
        "username = excluded.username, auth_username = excluded.auth_username, "
        "password = excluded.password, host_name = excluded.host_name, "
        "expire = excluded.expire, updated_at = excluded.updated_at",
        (routing_gateway_id, *values, now, now))


def delete(db: Database, routing_gateway_id: int) -> int:
    """Remove the gateway's registration; how many rows went (0 or 1)."""
    return db.execute("DELETE FROM gateway_registrations WHERE routing_gateway_id = ?",
                      (routing_gateway_id,))
