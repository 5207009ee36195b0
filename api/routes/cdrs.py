"""CDRs: one row per call attempt, pulled by cursor (``after_id``) with filters."""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, fields

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.resources import int_arg, list_params, page_args
from api.schemas import page_schema

bp = Blueprint("cdrs", __name__)


class CdrSchema(Schema):
    id = fields.Integer(required=True)
    call_id_in = fields.String(required=True)
    call_id_out = fields.String(allow_none=True)
    caller = fields.String(allow_none=True)
    callee = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    mapping_gateway_id = fields.Integer(allow_none=True)
    mapping_gateway = fields.String(allow_none=True)
    routing_gateway_id = fields.Integer(allow_none=True)
    routing_gateway = fields.String(allow_none=True)
    start_at = fields.Float(required=True)
    ringing_at = fields.Float(allow_none=True)
    answer_at = fields.Float(allow_none=True)
    end_at = fields.Float(required=True)
    duration = fields.Float(allow_none=True, metadata={"description": "answer to end, s"})
    final_code = fields.Integer(required=True)
    final_reason = fields.String(allow_none=True)
    hangup_by = fields.String(allow_none=True,
                              metadata={"description": "caller, callee or system"})
    termination_reason = fields.String(allow_none=True)
    phone = fields.String(allow_none=True, metadata={"description": "calling phone account"})
    callee_phone = fields.String(allow_none=True,
                                 metadata={"description": "called phone account"})
    caller_routed = fields.String(allow_none=True,
                                  metadata={"description": "after the mapping side's rules"})
    callee_routed = fields.String(allow_none=True,
                                  metadata={"description": "the number routed on"})
    caller_sent = fields.String(allow_none=True,
                                metadata={"description": "sent to the (last) vendor"})
    callee_sent = fields.String(allow_none=True,
                                metadata={"description": "sent to the (last) vendor"})


_FILTERS = [
    {"in": "query", "name": "since", "required": False, "schema": {"type": "number"},
     "description": "start_at >= since (Unix time)"},
    {"in": "query", "name": "until", "required": False, "schema": {"type": "number"},
     "description": "start_at < until (Unix time)"},
    {"in": "query", "name": "mapping_gateway_id", "required": False,
     "schema": {"type": "integer"}},
    {"in": "query", "name": "routing_gateway_id", "required": False,
     "schema": {"type": "integer"}},
]


def _float_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ApiError(422, f"{name} must be a number", {name: ["not a finite number"]})
    return value


@bp.get("/api/v1/cdrs")
@operation("get", "CDRs in id order; filter by time and gateway; page with after_id",
           response=page_schema(CdrSchema), parameters=list_params() + _FILTERS)
def list_cdrs() -> Any:
    limit, after = page_args()
    where: list[str] = ["id > ?"]
    args: list[float | int] = [after]
    since, until = _float_arg("since"), _float_arg("until")
    if since is not None:
        where.append("start_at >= ?")
        args.append(since)
    if until is not None:
        where.append("start_at < ?")
        args.append(until)
    for column in ("mapping_gateway_id", "routing_gateway_id"):
        if column in request.args:
            where.append(f"{column} = ?")
            args.append(int_arg(column, 0, 0, 2**62))
    rows = context.conn().execute(
        f"SELECT * FROM cdrs WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
        (*args, limit + 1),
    ).fetchall()
    items = [dict(r) for r in rows[:limit]]
    return {"items": items, "next_after_id": items[-1]["id"] if len(rows) > limit else None}


class CdrAttemptSchema(Schema):
    seq = fields.Integer(required=True)
    routing_gateway_id = fields.Integer(allow_none=True)
    routing_gateway = fields.String(allow_none=True)
    call_id = fields.String(allow_none=True)
    start_at = fields.Float(required=True)
    first_provisional_at = fields.Float(allow_none=True)
    first_provisional = fields.Integer(allow_none=True)
    final_code = fields.Integer(allow_none=True)
    outcome = fields.String(required=True, metadata={
        "description": "answered, failed, invite_timeout, trying_timeout, ringing_timeout, "
                       "session_progress_timeout, session_progress_sdp_timeout, cancelled, "
                       "abandoned"})
    duration = fields.Float(allow_none=True)


class CdrDetailSchema(CdrSchema):
    attempts = fields.List(fields.Nested(CdrAttemptSchema), required=True)


@bp.get("/api/v1/cdrs/<int:cdr_id>")
@operation("get", "One CDR with its attempts in order", response=CdrDetailSchema,
           errors=(404,))
def get_cdr(cdr_id: int) -> Any:
    conn = context.conn()
    row = conn.execute("SELECT * FROM cdrs WHERE id = ?", (cdr_id,)).fetchone()
    if row is None:
        raise ApiError(404, f"no CDR with id {cdr_id}")
    attempts = conn.execute(
        "SELECT * FROM cdr_attempts WHERE cdr_id = ? ORDER BY seq", (cdr_id,)).fetchall()
    keep = set(CdrAttemptSchema().fields)
    return {**dict(row), "attempts": [{k: a[k] for k in keep} for a in attempts]}
