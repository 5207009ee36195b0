"""One namespace for the usernames that register: phone accounts and password-mode
mapping gateways. Bindings are kept by username, so a name held by both would mix a
trunk's registration with a phone's; the API refuses the second holder
(docs/registration.md)."""

from __future__ import annotations

from b2bua.storage.backend import Database


def holder(db: Database, username: str, *, phone_id: int | None = None,
           mapping_gateway_id: int | None = None) -> str | None:
    """What already holds ``username``, other than the phone or gateway being written
    (``phone_id`` / ``mapping_gateway_id``); None when it is free."""
    row = db.row(
        "SELECT id FROM phones WHERE username = ? AND id IS DISTINCT FROM ?",
        (username, phone_id))
    if row is not None:
        return f"phone {int(row['id'])}"
    row = db.row(
        "SELECT id, name FROM mapping_gateways WHERE username = ? AND auth_mode = 'password' "
        "AND id IS DISTINCT FROM ?", (username, mapping_gateway_id))
    if row is not None:
        return f"mapping gateway {int(row['id'])} ({row['name']})"
    return None
