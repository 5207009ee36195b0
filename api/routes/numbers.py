"""The number transform table and number groups (black/white lists), with bulk import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, fields

from api import context
from api.errors import ApiError
from api.number_schemas import GroupNumbersSchema, NumberGroupSchema, NumberTransformSchema
from api.openapi import operation
from api.resources import Resource, int_arg, json_body
from b2bua.storage import audit, number_groups
from b2bua.storage.backend import Database

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
    on_delete=number_groups.clear,
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
    groups.fetch(context.database(), group_id)


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
    numbers = number_groups.numbers_after(context.database(), group_id, after, limit + 1)
    items = numbers[:limit]
    return {"items": items, "next_after": items[-1] if len(numbers) > limit else None}


def _change_members(group_id: int, action: str,
                    change: Callable[[Database, int, list[str]], None]) -> int:
    """Apply ``change`` to the numbers of the request body; returns how many changed."""
    _group(group_id)
    numbers = GroupNumbersSchema().load(json_body())["numbers"]
    db = context.database()
    with db.transaction():
        before = number_groups.count(db, group_id)
        change(db, group_id, numbers)
        changed = abs(number_groups.count(db, group_id) - before)
        audit.record(db, context.actor(), action, f"number-groups/{group_id}/numbers",
                     {"count": changed})
    return changed


@bp.post(BASE)
@operation("post", "Add numbers to a group (bulk; numbers already there are kept)",
           request=GroupNumbersSchema, response=GroupNumbersChangedSchema, errors=(404,))
def add_numbers(group_id: int) -> Any:
    changed = _change_members(group_id, "add", number_groups.add)
    return {"changed": changed, "total": number_groups.count(context.database(), group_id)}


@bp.delete(BASE)
@operation("delete", "Remove numbers from a group", request=GroupNumbersSchema,
           response=GroupNumbersChangedSchema, errors=(404,))
def remove_numbers(group_id: int) -> Any:
    changed = _change_members(group_id, "remove", number_groups.remove)
    if not changed:
        raise ApiError(404, "none of these numbers is in the group")
    return {"changed": changed, "total": number_groups.count(context.database(), group_id)}
