"""Stored parameter values. Absent rows mean the registry default."""

from __future__ import annotations

import json
import time
from typing import Any

from b2bua.config.registry import PARAMETERS, REGISTRY, check_combination, lookup
from b2bua.storage.backend import Database


def load_values(db: Database) -> dict[str, Any]:
    """Every parameter's effective value: stored when valid, else the default.

    A stored value that no longer validates (an older release's range, a hand edit)
    falls back to the default instead of stopping the engine.
    """
    values = {p.name: p.default for p in PARAMETERS}
    for row in db.rows("SELECT name, value FROM parameters"):
        param = REGISTRY.get(row["name"])
        if param is None:
            continue
        try:
            values[param.name] = param.validate(json.loads(row["value"]))
        except ValueError:
            continue
    return values


def set_value(db: Database, name: str, value: Any) -> Any:
    """Validate and store one value; returns the canonical value. Raises ParamError."""
    database = db
    param = lookup(name)
    canonical = param.validate(value)
    with database.transaction():
        merged = load_values(database)
        merged[param.name] = canonical
        check_combination(merged)
        database.execute(
            "INSERT INTO parameters (name, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (param.name, json.dumps(canonical), time.time()),
        )
    return canonical
