"""Webhooks as the engine sees them (b2bua/webhooks/outbox.py); the API edits the table
through ``crud`` like the other config tables."""

from __future__ import annotations

import json

from b2bua.storage.backend import Database
from b2bua.webhooks.outbox import Receiver


def webhook_receivers(database: Database) -> list[Receiver]:
    """Every webhook, enabled or not, in id order."""
    return [
        Receiver(
            id=int(r["id"]),
            name=str(r["name"]),
            url=str(r["url"]),
            secret=str(r["secret"]),
            events=frozenset(json.loads(r["events"] or "[]")),
            enabled=bool(r["enabled"]),
        )
        for r in database.rows("SELECT * FROM webhooks ORDER BY id")
    ]
