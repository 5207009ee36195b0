"""Calls in progress, so a crash (kill -9, power loss) still leaves a CDR for each."""

from __future__ import annotations

from typing import Any

VERSION = 9


def up(db: Any) -> None:
    db["active_calls"].create(
        {"call_id_in": str, "record": str, "start_at": float, "answer_at": float},
        pk="call_id_in",
        not_null={"record", "start_at"},
    )
