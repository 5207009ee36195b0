"""Media: per gateway relay mode, RTP payload encryption and RTP interruption check;
per call media counters in the CDR."""

from __future__ import annotations

from typing import Any

VERSION = 8


def up(db: Any) -> None:
    for table in ("mapping_gateways", "routing_gateways"):
        db[table].add_column("media_relay", str, not_null_default="auto")
        db[table].add_column("rtp_encryption", int, not_null_default=0)
        db[table].add_column("media_check", str, not_null_default="none")
    db["cdrs"].add_column("media", str)  # JSON: relayed, packets and bytes each way, cipher
