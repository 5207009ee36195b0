"""The number transform table and number groups (black/white lists), with bulk import."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, fields

from api import context
from api.errors import ApiError
from api.number_schemas import GroupNumbersSchema, NumberGroupSchema, NumberTransformSchema
from api.openapi import operation
from api.resources import Resource, int_arg, json_body
from b2bua.storage import audit
from b2bua.storage.db import transaction

transforms = Resource(
    name="number-transforms",
    table="number_transforms",
    schema=NumberTransformSchema,
    summary="number transform entries",
)

groups = Resource(
    name="number-groups",
    table="number_groups",
    schema=NumberGroupSchema,
    summary="number groups (black/white lists)",
    on_delete="DELETE FROM number_group_members WHERE group_id = ?",
)

bp = Blueprint("group_numbers", __name__)
BASE = "/api/v1/number-groups/<int:group_id>/numbers"


class GroupNumbersPageSchema(Schema):
    items = fields.List(fields.String(), required=True)
    next_after = fields.String(allow_none=True, required=True,
                               metadata={"description": "pass as after for the next page"})


class GroupNumbersChangedSchema(Schema):
    changed = fields.Integer(required=True)
    total = fields.Integer(required=True)


def _group(group_id: int) -> None:
    groups.fetch(context.conn(), group_id)


def _count(group_id: int) -> int:
    row = context.conn().execute(
        "SELECT COUNT(*) FROM number_group_members WHERE group_id = ?", (group_id,)).fetchone()
    return int(row[0])


@bp.get(BASE)
@operation("get", "Numbers of a group, in order; page with after", errors=(404,),
           response=GroupNumbersPageSchema,
           parameters=[{"in": "query", "name": "after", "required": False,
                        "schema": {"type": "string"}},
                       {"in": "query", "name": "limit", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}])
def list_numbers(group_id: int) -> Any:
    _group(group_id)
    limit = int_arg("limit", 1000, 1, 10000)
    after = request.args.get("after", "")
    rows = context.conn().execute(
        "SELECT number FROM number_group_members WHERE group_id = ? AND number > ? "
        "ORDER BY number LIMIT ?", (group_id, after, limit + 1)).fetchall()
    items = [str(r[0]) for r in rows[:limit]]
    return {"items": items, "next_after": items[-1] if len(rows) > limit else None}


def _change_members(group_id: int, action: str, sql: str) -> int:
    """Apply ``sql`` to every number of the request body; returns how many changed."""
    _group(group_id)
    numbers = GroupNumbersSchema().load(json_body())["numbers"]
    conn = context.conn()
    with transaction(conn):
        before = _count(group_id)
        conn.executemany(sql, [(group_id, n) for n in numbers])
        changed = abs(_count(group_id) - before)
        audit.record(conn, context.actor(), action, f"number-groups/{group_id}/numbers",
                     {"count": changed})
    return changed


@bp.post(BASE)
@operation("post", "Add numbers to a group (bulk; numbers already there are kept)",
           request=GroupNumbersSchema, response=GroupNumbersChangedSchema, errors=(404,))
def add_numbers(group_id: int) -> Any:
    changed = _change_members(
        group_id, "add",
        "INSERT OR IGNORE INTO number_group_members (group_id, number) VALUES (?, ?)")
    return {"changed": changed, "total": _count(group_id)}


@bp.delete(BASE)
@operation("delete", "Remove numbers from a group", request=GroupNumbersSchema,
           response=GroupNumbersChangedSchema, errors=(404,))
def remove_numbers(group_id: int) -> Any:
    changed = _change_members(
        group_id, "remove",
        "DELETE FROM number_group_members WHERE group_id = ? AND number = ?")
    if not changed:
        raise ApiError(404, "none of these numbers is in the group")
    return {"changed": changed, "total": _count(group_id)}
