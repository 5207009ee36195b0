"""The Path (RFC 3327) a phone registered through: the proxies between it and us, so
calls and keep-alives to it go the way its registration came."""

from __future__ import annotations

from typing import Any

VERSION = 11


def up(db: Any) -> None:
    db["registrations"].add_column("path", str, not_null_default="")  # JSON list, "" = none
