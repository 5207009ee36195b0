"""Audit log of configuration changes: who, when, what."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any


def record(
    conn: sqlite3.Connection, actor: str, action: str, resource: str, detail: Any = None
) -> None:
    conn.execute(
        "INSERT INTO audit_log (at, actor, action, resource, detail) VALUES (?, ?, ?, ?, ?)",
        (time.time(), actor, action, resource, json.dumps(detail, default=str)),
    )
