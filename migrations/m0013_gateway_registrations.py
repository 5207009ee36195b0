"""Registering mapping gateways: a password-mode customer trunk registers like a phone,
and its binding records which gateway it is, so a reload that disables, deletes or
switches the gateway out of password mode removes it (docs/registration.md)."""

from __future__ import annotations

from typing import Any

VERSION = 13


def up(db: Any) -> None:
    db["registrations"].add_column("mapping_gateway_id", int)  # NULL: a phone
