"""Gateway quality (docs/gateway-quality.md): each mapping and routing
gateway's calls summed per minute, hour and day (``gateway_stats``, one row per gateway,
step and period; the PDD histogram and the failures by code as JSON text), and how far
the roll-up has read the CDRs (``stats_progress``). CDRs gain the caller's display name
and User-Agent (the console shows them)."""

from __future__ import annotations

from typing import Any

VERSION = 17


def up(db: Any) -> None:
    db["gateway_stats"].create(
        {"kind": str, "gateway_id": int, "step": int, "period_at": int, "attempts": int,
         "answered": int, "ner": int, "talk": float, "pdd_seconds": float, "pdd": str,
         "failures": str},
        pk=("kind", "gateway_id", "step", "period_at"),
        not_null={"attempts", "answered", "ner", "talk", "pdd_seconds", "pdd", "failures"},
    )
    db["gateway_stats"].create_index(["step", "period_at"])
    db["stats_progress"].create({"name": str, "last_id": int}, pk="name",
                                not_null={"last_id"})
    db["cdrs"].add_column("caller_name", str)
    db["cdrs"].add_column("user_agent", str)


def up_postgresql(database: Any) -> None:
    database.execute(
        "CREATE TABLE gateway_stats (kind text, gateway_id bigint, step bigint, "
        "period_at bigint, attempts bigint NOT NULL, answered bigint NOT NULL, "
        "ner bigint NOT NULL, talk double precision NOT NULL, "
        "pdd_seconds double precision NOT NULL, pdd text NOT NULL, "
        "failures text NOT NULL, PRIMARY KEY (kind, gateway_id, step, period_at))")
    database.execute("CREATE INDEX idx_gateway_stats_step_period_at "
                     "ON gateway_stats (step, period_at)")
    database.execute("CREATE TABLE stats_progress (name text PRIMARY KEY, "
                     "last_id bigint NOT NULL)")
    database.execute("ALTER TABLE cdrs ADD COLUMN caller_name text")
    database.execute("ALTER TABLE cdrs ADD COLUMN user_agent text")
