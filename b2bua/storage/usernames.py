"""One namespace for the usernames that register: phone accounts and password-mode
mapping gateways. Bindings are kept by username, so a name held by both would mix a
trunk's registration with a phone's; the API refuses the second holder
(docs/registration.md)."""

from __future__ import annotations

import sqlite3


def holder(conn: sqlite3.Connection, username: str, *, phone_id: int | None = None,
           mapping_gateway_id: int | None = None) -> str | None:
    """What already holds ``username``, other than the phone or gateway being written
    (``phone_id`` / ``mapping_gateway_id``); None when it is free."""
    row = conn.execute(
        "SELECT id FROM phones WHERE username = ? AND id IS NOT ?",
        (username, phone_id)).fetchone()
    if row is not None:
        return f"phone {int(row['id'])}"
    row = conn.execute(
        "SELECT id, name FROM mapping_gateways WHERE username = ? AND auth_mode = 'password' "
        "AND id IS NOT ?", (username, mapping_gateway_id)).fetchone()
    if row is not None:
        return f"mapping gateway {int(row['id'])} ({row['name']})"
    return None
