"""The change counters of the config tables: one row per table in ``config_versions``,
bumped by triggers on that table (b2bua/config/live.py reloads what moved)."""

from __future__ import annotations

from b2bua.storage.backend import Database


def change_counters(database: Database) -> dict[str, int]:
    return {str(row["table_name"]): int(row["version"])
            for row in database.rows("SELECT table_name, version FROM config_versions")}
