"""Audit log of configuration changes made through the API and the CLI."""

from __future__ import annotations

from typing import Any

VERSION = 2


def up(db: Any) -> None:
    db["audit_log"].create(
        {
            "id": int,
            "at": float,
            "actor": str,
            "action": str,
            "resource": str,
            "detail": str,
        },
        pk="id",
        not_null={"at", "actor", "action", "resource"},
    )
    db["audit_log"].create_index(["at"])
