"""Carrier controls (docs/carrier-controls.md): call-rate limits on mapping gateways,
phones and routing gateways; maximum call duration on mapping gateways and phones; the
failure-code map of a mapping gateway; a routing gateway's weight and its periods (time
ranges per weekday with their own prefixes, priority and capacity). CDRs gain the code
the caller was sent (``caller_code``), which a failure-code map may make differ from the
vendor's ``final_code``."""

from __future__ import annotations

from typing import Any

VERSION = 19

_RATE = (("call_rate", float), ("call_rate_burst", int))
_DURATION = (("max_duration", int), ("max_duration_upper", int))


def up(db: Any) -> None:
    for table, columns in (("mapping_gateways", _RATE + _DURATION),
                           ("phones", _RATE + _DURATION),
                           ("routing_gateways", (*_RATE, ("weight", int)))):
        for name, kind in columns:
            db[table].add_column(name, kind)
    db["mapping_gateways"].add_column("call_rate_code", int, not_null_default=503)
    db["mapping_gateways"].add_column("failure_codes", str, not_null_default="{}")
    db["routing_gateways"].add_column("periods", str, not_null_default="[]")
    db["cdrs"].add_column("caller_code", int)


def up_postgresql(database: Any) -> None:
    sql = {float: "double precision", int: "bigint"}
    for table, columns in (("mapping_gateways", _RATE + _DURATION),
                           ("phones", _RATE + _DURATION),
                           ("routing_gateways", (*_RATE, ("weight", int)))):
        for name, kind in columns:
            database.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql[kind]}")
    database.execute("ALTER TABLE mapping_gateways ADD COLUMN call_rate_code bigint "
                     "NOT NULL DEFAULT 503")
    database.execute("ALTER TABLE mapping_gateways ADD COLUMN failure_codes text "
                     "NOT NULL DEFAULT '{}'")
    database.execute("ALTER TABLE routing_gateways ADD COLUMN periods text "
                     "NOT NULL DEFAULT '[]'")
    database.execute("ALTER TABLE cdrs ADD COLUMN caller_code bigint")
