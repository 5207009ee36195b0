"""The bodies of the webhooks' events, built in the delivery thread from what the engine's
event loop handed over (the call's records as they were, never the live call).

Every body is a JSON object ``{"id", "type", "at", "node", ...}`` and one more member:
``call`` for the call events, ``registration`` for a phone's or a trunk's registration
(docs/carrier-controls.md, "Call events (webhooks)").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from b2bua.calls.cdr import ATTEMPT_COLUMNS, CdrRecord
from b2bua.registrar.bindings import Binding

# What a call says of itself at its start (the rest of its record is not known yet).
START_FIELDS = ("call_id_in", "cdr_uuid", "caller", "callee", "source",
                "mapping_gateway_id", "mapping_gateway", "phone", "origin_vendor",
                "callee_phone", "caller_routed", "callee_routed", "start_at", "caller_name",
                "user_agent")
# What the loop hands over at the answer, in this order (``answer_data``).
ANSWER_FIELDS = ("call_id_in", "cdr_uuid", "caller", "callee", "start_at", "answer_at",
                 "call_id_out", "routing_gateway_id", "routing_gateway")

_encode = json.JSONEncoder(separators=(",", ":")).encode


def cdr_fields() -> tuple[str, ...]:
    """The CDR's columns, as ``CdrRecord`` has them now (a new column comes along)."""
    return tuple(f.name for f in fields(CdrRecord))


def call_start(record: CdrRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in START_FIELDS}


def call_answer(data: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(ANSWER_FIELDS, data, strict=True))


def call_end(record: CdrRecord, attempts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The CDR as written: every column of the ``cdrs`` row but its id (``media`` the
    same JSON text), and the attempts as ``cdr_attempts`` holds them."""
    cdr: dict[str, Any] = {name: getattr(record, name) for name in cdr_fields()}
    cdr["attempts"] = [{c: a.get(c) for c in ATTEMPT_COLUMNS} for a in attempts]
    return cdr


def registration(change: str, binding: Binding) -> dict[str, Any]:
    """``change``: registered, unregistered or expired."""
    return {"event": change, **binding.snapshot()}


def new_id() -> str:
    """An event's id: unique, 32 hex digits."""
    return uuid.uuid4().hex


def body(event_id: str, kind: str, at: float, node: str | None, section: str,
         content: dict[str, Any]) -> bytes:
    return _encode({"id": event_id, "type": kind, "at": at, "node": node or None,
                    section: content}).encode()
