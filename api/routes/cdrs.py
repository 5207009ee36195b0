"""CDRs: one row per call, pulled by cursor (``after_id``/``since_id``) with filters,
as JSON pages or as a streamed CSV export.

The cursor is exact: a CDR's id is assigned by the database when the engine's writer
inserts the row, and a row is inserted only once the call has ended, never updated
after. The single writer commits ids in increasing order, so a reader that has seen id N
has already been able to see every id below N: following ``next_after_id`` (or the last
id of a CSV page) never returns a CDR twice and never skips one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request
from marshmallow import Schema, fields

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.resources import MAX_PAGE, float_arg, int_arg, known_args, list_params, raw_body
from api.schemas import page_schema
from b2bua.storage import cdrs as cdr_store
from b2bua.storage.cdrs import CdrFilter

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
    origin_vendor = fields.String(
        allow_none=True,
        metadata={"description": "the vendor that sent the call to our registered contact"})
    media = fields.String(allow_none=True, metadata={
        "description": "JSON text: relayed, encryption_mode, packets and bytes each way, "
                       "malformed packets dropped, relay ports (docs/media.md)"})
    cdr_uuid = fields.String(allow_none=True, metadata={
        "description": "the call's own id, given at its start: a CDR is stored once under "
                       "it (empty for CDRs written before it existed)"})
    node = fields.String(allow_none=True, metadata={
        "description": "the node that carried the call (docs/cluster.md); empty for a "
                       "switch on its own"})
    caller_name = fields.String(allow_none=True, metadata={
        "description": "the caller's From display name as received (at most 128 "
                       "characters; anyone's text: show it escaped)"})
    user_agent = fields.String(allow_none=True, metadata={
        "description": "the caller's User-Agent (at most 256 characters)"})
    caller_code = fields.Integer(allow_none=True, metadata={
        "description": "the final code the caller was sent: final_code, unless the mapping "
                       "gateway's failure_codes map changed it (docs/carrier-controls.md)"})


MAX_ID = 2**62
CSV_DEFAULT_LIMIT = 10_000
CSV_MAX_LIMIT = 100_000
# The CSV export's columns, in this order, whatever columns the table gains later
# (a new one is only ever appended).
CSV_COLUMNS = (
    "id", "start_at", "ringing_at", "answer_at", "end_at", "duration",
    "caller", "callee", "caller_routed", "callee_routed", "caller_sent", "callee_sent",
    "source", "mapping_gateway_id", "mapping_gateway", "routing_gateway_id",
    "routing_gateway", "phone", "callee_phone", "origin_vendor",
    "final_code", "final_reason", "hangup_by", "termination_reason",
    "call_id_in", "call_id_out", "media", "cdr_uuid", "node", "caller_name", "user_agent",
    "caller_code",
)
_NUMBER_MAX = 128

_CURSOR = [
    {"in": "query", "name": "since_id", "required": False,
     "schema": {"type": "integer", "minimum": 0},
     "description": "alias of after_id for billing pollers"},
]
_FILTERS = [
    {"in": "query", "name": "since", "required": False, "schema": {"type": "number"},
     "description": "start_at >= since (Unix time)"},
    {"in": "query", "name": "until", "required": False, "schema": {"type": "number"},
     "description": "start_at < until (Unix time)"},
    {"in": "query", "name": "mapping_gateway_id", "required": False,
     "schema": {"type": "integer"}},
    {"in": "query", "name": "routing_gateway_id", "required": False,
     "schema": {"type": "integer"}},
    {"in": "query", "name": "caller", "required": False, "schema": {"type": "string"},
     "description": "caller as received, exact; a trailing * matches a prefix (44*)"},
    {"in": "query", "name": "callee", "required": False, "schema": {"type": "string"},
     "description": "callee as received, exact; a trailing * matches a prefix (44*)"},
    {"in": "query", "name": "final_code", "required": False,
     "schema": {"type": "integer", "minimum": 100, "maximum": 699},
     "description": "the caller's final code, exact"},
    {"in": "query", "name": "termination_reason", "required": False,
     "schema": {"type": "string", "maxLength": 128},
     "description": "termination_reason, exact (caller BYE, operator, ...)"},
]
_TAIL = [
    {"in": "query", "name": "tail", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
     "description": "the N newest matching CDRs (in id order) instead of a page from a "
                    "cursor; next_after_id is null, poll on from the last id"},
]
_CSV_LIMIT = [
    {"in": "query", "name": "limit", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": CSV_MAX_LIMIT,
                "default": CSV_DEFAULT_LIMIT}},
    {"in": "query", "name": "after_id", "required": False,
     "schema": {"type": "integer", "minimum": 0}},
]
_LIST_ARGS = {"limit", "after_id", *(str(p["name"]) for p in _CURSOR + _FILTERS + _TAIL)}
_CSV_ARGS = {"limit", "after_id", *(str(p["name"]) for p in _CURSOR + _FILTERS)}


def cursor_arg() -> int:
    """``after_id``, or its alias ``since_id``; both given must agree."""
    after = int_arg("after_id", 0, 0, MAX_ID)
    if "since_id" not in request.args:
        return after
    since_id = int_arg("since_id", 0, 0, MAX_ID)
    if "after_id" in request.args and since_id != after:
        raise ApiError(422, "since_id and after_id disagree",
                       {"since_id": ["an alias of after_id: give one of them"]})
    return since_id


def _number_filter(column: str) -> tuple[str | None, bool]:
    """The number asked for, and whether it is a prefix (``44*``)."""
    raw = request.args.get(column)
    if raw is None:
        return None, False
    prefix = raw.endswith("*")
    value = raw[:-1] if prefix else raw
    if not value or len(value) > _NUMBER_MAX or "*" in value:
        raise ApiError(422, f"{column} is a number, or a prefix ending in *",
                       {column: [f"1-{_NUMBER_MAX} characters, at most one * at the end"]})
    return value, prefix


def _gateway_filter(column: str) -> int | None:
    return int_arg(column, 0, 0, MAX_ID) if column in request.args else None


def cdr_filter() -> CdrFilter:
    """The filters shared by the JSON list and the CSV export (not the cursor)."""
    since, until = float_arg("since"), float_arg("until")
    mapping_gateway_id = _gateway_filter("mapping_gateway_id")
    routing_gateway_id = _gateway_filter("routing_gateway_id")
    caller, caller_prefix = _number_filter("caller")
    callee, callee_prefix = _number_filter("callee")
    final_code = int_arg("final_code", 0, 100, 699) if "final_code" in request.args else None
    reason = request.args.get("termination_reason")
    if reason is not None and not 1 <= len(reason) <= 128:
        raise ApiError(422, "termination_reason is 1-128 characters",
                       {"termination_reason": ["1-128 characters"]})
    return CdrFilter(since=since, until=until, mapping_gateway_id=mapping_gateway_id,
                     routing_gateway_id=routing_gateway_id, caller=caller,
                     caller_prefix=caller_prefix, callee=callee, callee_prefix=callee_prefix,
                     final_code=final_code, termination_reason=reason)


@bp.get("/api/v1/cdrs")
@operation("get", "CDRs in id order; filter by time, gateway, caller, callee; page with "
           "after_id (or since_id)", response=page_schema(CdrSchema),
           parameters=list_params() + _CURSOR + _FILTERS + _TAIL)
def list_cdrs() -> Any:
    known_args(_LIST_ARGS)
    limit = int_arg("limit", 100, 1, MAX_PAGE)
    after = cursor_arg()
    match = cdr_filter()
    db = context.database()
    if "tail" in request.args:
        if "after_id" in request.args or "since_id" in request.args:
            raise ApiError(422, "tail reads the newest CDRs: no cursor with it",
                           {"tail": ["not with after_id or since_id"]})
        tail = int_arg("tail", 10, 1, MAX_PAGE)
        return {"items": cdr_store.newest(db, match, tail), "next_after_id": None}
    rows = cdr_store.page(db, match, after, limit + 1)
    items = rows[:limit]
    return {"items": items, "next_after_id": items[-1]["id"] if len(rows) > limit else None}


@bp.get("/api/v1/cdrs.csv")
@raw_body("text/csv", "header row, then one row per CDR; columns: " + ", ".join(CSV_COLUMNS))
@operation("get", "CDRs as CSV (streamed; header row; fixed columns); same filters as "
           "/cdrs; X-Next-After-Id when more rows follow",
           parameters=_CSV_LIMIT + _CURSOR + _FILTERS)
def export_cdrs_csv() -> Any:
    known_args(_CSV_ARGS)
    limit = int_arg("limit", CSV_DEFAULT_LIMIT, 1, CSV_MAX_LIMIT)
    after = cursor_arg()
    match = cdr_filter()
    # The page's last id is fixed now, so the body and X-Next-After-Id agree even while
    # the engine keeps inserting.
    last, more = cdr_store.export_end(context.database(), match, after, limit)
    chunks = cdr_store.export_rows(context.db_target(), CSV_COLUMNS, match, after, last, limit)
    resp = Response(_csv_text(chunks), mimetype="text/csv")
    resp.headers["Content-Disposition"] = f'attachment; filename="cdrs-after-{after}.csv"'
    resp.headers["Cache-Control"] = "no-store"
    if more:
        resp.headers["X-Next-After-Id"] = str(last)
    return resp


def _csv_text(chunks: Iterator[list[tuple[Any, ...]]]) -> Iterator[str]:
    """The CSV text, a piece per chunk of rows, the header first."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\r\n")
    out.writerow(CSV_COLUMNS)
    for rows in chunks:
        out.writerows(rows)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


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
                       "abandoned, dns_failure (the gateway's name gave no address)"})
    duration = fields.Float(allow_none=True)
    target = fields.String(allow_none=True, metadata={
        "description": "the address:port the INVITE went to (a DNS-named gateway's target); "
                       "null when none was found"})


class CdrDetailSchema(CdrSchema):
    attempts = fields.List(fields.Nested(CdrAttemptSchema), required=True)


@bp.get("/api/v1/cdrs/<int:cdr_id>")
@operation("get", "One CDR with its attempts in order", response=CdrDetailSchema,
           errors=(404,))
def get_cdr(cdr_id: int) -> Any:
    db = context.database()
    row = cdr_store.get(db, cdr_id)
    if row is None:
        raise ApiError(404, f"no CDR with id {cdr_id}")
    keep = set(CdrAttemptSchema().fields)
    return {**row, "attempts": [{k: a[k] for k in keep} for a in cdr_store.attempts(db, cdr_id)]}
