"""Count changes of the registrations, so signalling workers other than worker 0 (which
handles every REGISTER) reload the bindings as they reload configuration."""

from __future__ import annotations

from typing import Any

from migrations.m0003_gateways_cdrs import bump_triggers

VERSION = 10


def up(db: Any) -> None:
    bump_triggers(db, "registrations")
