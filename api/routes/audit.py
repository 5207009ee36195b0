"""The audit log: every configuration change, who made it and when, read by cursor."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, fields

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.resources import MAX_PAGE, float_arg, int_arg, known_args, list_params
from api.schemas import page_schema
from b2bua.storage import audit

bp = Blueprint("audit", __name__)

_TEXT_MAX = 256


class AuditEntrySchema(Schema):
    id = fields.Integer(required=True)
    at = fields.Float(required=True, metadata={"description": "Unix time"})
    actor = fields.String(required=True,
                          metadata={"description": "token:NAME for the API, operator:NAME "
                                                   "for the console, cli for the CLI"})
    action = fields.String(required=True, metadata={"description": "create, update, delete, "
                                                                    "add, remove"})
    resource = fields.String(required=True, metadata={"description": "e.g. routing-gateways/3, "
                                                                      "parameter/SS_..."})
    detail = fields.Raw(allow_none=True, metadata={
        "description": "what was sent (JSON; passwords shown as ***)"})


_FILTERS = [
    {"in": "query", "name": "since", "required": False, "schema": {"type": "number"},
     "description": "at >= since (Unix time)"},
    {"in": "query", "name": "until", "required": False, "schema": {"type": "number"},
     "description": "at < until (Unix time)"},
    {"in": "query", "name": "actor", "required": False, "schema": {"type": "string"},
     "description": "exact, e.g. token:admin or cli"},
    {"in": "query", "name": "action", "required": False, "schema": {"type": "string"},
     "description": "exact: create, update, delete, add, remove"},
    {"in": "query", "name": "resource", "required": False, "schema": {"type": "string"},
     "description": "prefix: routing-gateways, routing-gateways/3, parameter/SS_SIP"},
    {"in": "query", "name": "before_id", "required": False,
     "schema": {"type": "integer", "minimum": 1},
     "description": "only ids below it (with tail: page back from the newest)"},
    {"in": "query", "name": "tail", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
     "description": "the newest N matching entries (in id order) instead of a cursor "
                    "page; not with limit"},
]
_ARGS = {"limit", "after_id", *(str(p["name"]) for p in _FILTERS)}


def _text_arg(name: str) -> str | None:
    raw = request.args.get(name)
    if raw is not None and not 1 <= len(raw) <= _TEXT_MAX:
        raise ApiError(422, f"{name} must be 1-{_TEXT_MAX} characters",
                       {name: [f"1-{_TEXT_MAX} characters"]})
    return raw


@bp.get("/api/v1/audit")
@operation("get", "Audit log of configuration changes in id order; filter by time, actor, "
           "action, resource prefix; page with after_id",
           response=page_schema(AuditEntrySchema), parameters=list_params() + _FILTERS)
def list_audit() -> Any:
    known_args(_ARGS)
    limit = int_arg("limit", 100, 1, MAX_PAGE)
    after = int_arg("after_id", 0, 0, 2**62)
    since, until = float_arg("since"), float_arg("until")
    before = int_arg("before_id", 0, 1, 2**62) if "before_id" in request.args else None
    tail = int_arg("tail", 0, 1, MAX_PAGE) if "tail" in request.args else None
    filters: dict[str, Any] = {
        "since": since, "until": until, "actor": _text_arg("actor"),
        "action": _text_arg("action"), "resource_prefix": _text_arg("resource"),
        "before_id": before}
    if tail is not None:  # the newest: a look at the end, not a cursor to follow
        if "limit" in request.args:
            raise ApiError(422, "tail and limit together", {"tail": ["not with limit"]})
        rows = audit.entries(context.database(), after_id=after, limit=tail, newest=True,
                             **filters)
        return {"items": rows, "next_after_id": None}
    rows = audit.entries(context.database(), after_id=after, limit=limit + 1, **filters)
    items = rows[:limit]
    return {"items": items, "next_after_id": items[-1]["id"] if len(rows) > limit else None}
