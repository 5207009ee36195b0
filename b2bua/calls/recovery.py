"""Calls in progress are noted while they last (b2bua/storage/active_calls.py); on start,
what a crash left there becomes CDRs marked ``interrupted``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from b2bua.calls.cdr import CdrRecord
from b2bua.storage import active_calls
from b2bua.storage.backend import Database

log = logging.getLogger("b2bua.recovery")

REASON = "interrupted: the softswitch stopped while the call was up"


def recover(database: Database, now: float | None = None, node: str = "",
            hang_up: Callable[[list[dict[str, Any]]], object] | None = None) -> int:
    """Turn what a crash of ``node`` left in ``active_calls`` into CDRs; returns how
    many. A node recovers its own at start, and a dead node's when it takes over: then
    ``hang_up`` gets the dialogs of its answered calls, to end them with BYE."""
    end = time.time() if now is None else now
    left = active_calls.left_behind(database, node)
    if not left:
        return 0
    records = []
    dialogs: list[dict[str, Any]] = []
    for data, answer_at, legs in left:
        if answer_at:
            dialogs.extend(legs)
        data.update(
            answer_at=answer_at, end_at=end,
            duration=round(end - answer_at, 3) if answer_at else 0.0,
            final_code=200 if answer_at else 500,
            final_reason="OK" if answer_at else "Server Internal Error",
            hangup_by="system", termination_reason=REASON,
        )
        records.append(CdrRecord(**data))
    active_calls.settle(database, records, node)
    if hang_up is not None and dialogs:
        hang_up(dialogs)
    log.warning("%d calls were up when %s last stopped; CDRs written as interrupted",
                len(left), f"node {node}" if node else "the softswitch")
    return len(left)
