"""Gateway switching: per routing gateway timers and stop rules, CDR attempts."""

from __future__ import annotations

from typing import Any

VERSION = 5

TIMER_COLUMNS = ("invite_timeout", "trying_timeout", "session_progress_timeout",
                 "session_progress_sdp_timeout", "ringing_timeout")
OVERRIDE_COLUMNS = ("stop_switch_after_invite_timeout", "stop_switch_after_sdp",
                    "stop_switch_after_rtp_start", "stop_switch_after_busy")


def up(db: Any) -> None:
    table = db["routing_gateways"]
    for column in TIMER_COLUMNS:
        table.add_column(column, int, not_null_default=0)
    for column in OVERRIDE_COLUMNS:
        table.add_column(column, int)  # NULL: the system parameter decides
    table.add_column("switch_after_ringing", int, not_null_default=1)
    table.add_column("stop_switch_codes", str, not_null_default="[]")
    db["cdrs"].create_index(["call_id_in"])
    db["cdr_attempts"].create(
        {
            "id": int,
            "cdr_id": int,
            "seq": int,
            "routing_gateway_id": int,
            "routing_gateway": str,
            "call_id": str,
            "start_at": float,
            "first_provisional_at": float,
            "first_provisional": int,
            "final_code": int,
            "outcome": str,
            "duration": float,
        },
        pk="id",
        foreign_keys=[("cdr_id", "cdrs", "id")],
        not_null={"cdr_id", "seq", "start_at", "outcome"},
    )
    db["cdr_attempts"].create_index(["cdr_id", "seq"])
