"""CDRs: one row per call, pulled by cursor (``after_id``/``since_id``) with filters,
as JSON pages or as a streamed CSV export.

The cursor is exact: a CDR's id is assigned by SQLite when the engine's writer inserts
the row, and a row is inserted only once the call has ended, never updated after. The
single writer commits ids in increasing order, so a reader that has seen id N has
already been able to see every id below N: following ``next_after_id`` (or the last id
of a CSV page) never returns a CDR twice and never skips one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request
from marshmallow import Schema, fields

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.resources import MAX_PAGE, float_arg, int_arg, known_args, list_params, raw_body
from api.schemas import page_schema
from b2bua.storage import db

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
    "call_id_in", "call_id_out", "media",
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


def _number_filter(column: str, where: list[str], args: list[Any]) -> None:
    raw = request.args.get(column)
    if raw is None:
        return
    prefix = raw.endswith("*")
    value = raw[:-1] if prefix else raw
    if not value or len(value) > _NUMBER_MAX or "*" in value:
        raise ApiError(422, f"{column} is a number, or a prefix ending in *",
                       {column: [f"1-{_NUMBER_MAX} characters, at most one * at the end"]})
    if prefix:
        where.append(f"substr({column}, 1, ?) = ?")
        args.extend((len(value), value))
    else:
        where.append(f"{column} = ?")
        args.append(value)


def cdr_where() -> tuple[list[str], list[Any]]:
    """The filters shared by the JSON list and the CSV export (not the cursor)."""
    where: list[str] = []
    args: list[Any] = []
    since, until = float_arg("since"), float_arg("until")
    if since is not None:
        where.append("start_at >= ?")
        args.append(since)
    if until is not None:
        where.append("start_at < ?")
        args.append(until)
    for column in ("mapping_gateway_id", "routing_gateway_id"):
        if column in request.args:
            where.append(f"{column} = ?")
            args.append(int_arg(column, 0, 0, MAX_ID))
    for column in ("caller", "callee"):
        _number_filter(column, where, args)
    return where, args


@bp.get("/api/v1/cdrs")
@operation("get", "CDRs in id order; filter by time, gateway, caller, callee; page with "
           "after_id (or since_id)", response=page_schema(CdrSchema),
           parameters=list_params() + _CURSOR + _FILTERS + _TAIL)
def list_cdrs() -> Any:
    known_args(_LIST_ARGS)
    limit = int_arg("limit", 100, 1, MAX_PAGE)
    after = cursor_arg()
    where, args = cdr_where()
    conn = context.conn()
    if "tail" in request.args:
        if "after_id" in request.args or "since_id" in request.args:
            raise ApiError(422, "tail reads the newest CDRs: no cursor with it",
                           {"tail": ["not with after_id or since_id"]})
        tail = int_arg("tail", 10, 1, MAX_PAGE)
        rows = conn.execute(
            f"SELECT * FROM (SELECT * FROM cdrs WHERE {' AND '.join(['1', *where])} "
            "ORDER BY id DESC LIMIT ?) ORDER BY id", (*args, tail)).fetchall()
        return {"items": [dict(r) for r in rows], "next_after_id": None}
    rows = conn.execute(
        f"SELECT * FROM cdrs WHERE {' AND '.join(['id > ?', *where])} ORDER BY id LIMIT ?",
        (after, *args, limit + 1),
    ).fetchall()
    items = [dict(r) for r in rows[:limit]]
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
    where, args = cdr_where()
    conn = context.conn()
    # Fix the page's last id now, so the body and X-Next-After-Id agree even while the
    # engine keeps inserting: ids at or below the newest one are never added later.
    newest = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM cdrs").fetchone()[0])
    conditions = " AND ".join(["id > ?", "id <= ?", *where])
    ahead = conn.execute(
        f"SELECT id FROM cdrs WHERE {conditions} ORDER BY id LIMIT 2 OFFSET ?",
        (after, newest, *args, limit - 1)).fetchall()
    more = len(ahead) == 2
    last = int(ahead[0][0]) if more else newest
    sql = (f"SELECT {', '.join(CSV_COLUMNS)} FROM cdrs WHERE {conditions} "
           "ORDER BY id LIMIT ?")
    params = (after, last, *args, limit)
    path = Path(current_app.config["SOFTSWITCH_DB"])
    resp = Response(_csv_rows(path, sql, params), mimetype="text/csv")
    resp.headers["Content-Disposition"] = f'attachment; filename="cdrs-after-{after}.csv"'
    resp.headers["Cache-Control"] = "no-store"
    if more:
        resp.headers["X-Next-After-Id"] = str(last)
    return resp


def _csv_rows(path: Path, sql: str, params: tuple[Any, ...]) -> Iterator[str]:
    """The CSV text in chunks, read on the export's own connection while it streams."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\r\n")
    out.writerow(CSV_COLUMNS)
    conn = db.connect(path, readonly=True)
    try:
        cursor = conn.execute(sql, params)
        while rows := cursor.fetchmany(500):
            out.writerows(tuple(r) for r in rows)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()
    finally:
        conn.close()


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
    conn = context.conn()
    row = conn.execute("SELECT * FROM cdrs WHERE id = ?", (cdr_id,)).fetchone()
    if row is None:
        raise ApiError(404, f"no CDR with id {cdr_id}")
    attempts = conn.execute(
        "SELECT * FROM cdr_attempts WHERE cdr_id = ? ORDER BY seq", (cdr_id,)).fetchall()
    keep = set(CdrAttemptSchema().fields)
    return {**dict(row), "attempts": [{k: a[k] for k in keep} for a in attempts]}
