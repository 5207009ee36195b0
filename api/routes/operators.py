"""Operator accounts of the web console (docs/console.md); admins only, reading included.

Passwords are write-only (hashed at once, shown as ``***`` in the audit log). A new
password or role ends the account's console sessions; so does removing it.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify
from marshmallow import Schema, fields, validate

from api import context
from api.console import accounts
from api.errors import ApiError
from api.openapi import operation
from api.resources import json_body
from b2bua.storage import audit, operators
from b2bua.storage.backend import ConflictError
from b2bua.storage.operators import ROLES, Operator

bp = Blueprint("operators", __name__)
BASE = "/api/v1/operators"

NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z",
                       error="1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit")
PASSWORD = validate.Length(min=accounts.PASSWORD_MIN, max=accounts.PASSWORD_MAX,
                           error=f"{accounts.PASSWORD_MIN}-{accounts.PASSWORD_MAX} characters")


class OperatorSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=NAME)
    role = fields.String(load_default="admin", validate=validate.OneOf(ROLES),
                         metadata={"description": "admin: read and change; read: only read"})
    password = fields.String(required=True, load_only=True, validate=PASSWORD,
                             metadata={"description": "write-only"})
    failures = fields.Integer(dump_only=True, metadata={
        "description": "failed sign-ins in a row since the last good one"})
    locked_until = fields.Float(dump_only=True, allow_none=True, metadata={
        "description": "Unix time the lock-out ends; null: not locked"})
    last_sign_in_at = fields.Float(dump_only=True, allow_none=True)
    created_at = fields.Float(dump_only=True)
    updated_at = fields.Float(dump_only=True)


class OperatorChangeSchema(Schema):
    role = fields.String(validate=validate.OneOf(ROLES))
    password = fields.String(load_only=True, validate=PASSWORD,
                             metadata={"description": "write-only"})


class OperatorListSchema(Schema):
    items = fields.List(fields.Nested(OperatorSchema), required=True)


def _admin() -> None:
    """Accounts are an admin's business: a read token or operator sees none of them."""
    if context.role() != "admin":
        raise ApiError(403, "operator accounts are for admins only")


def _find(name: str) -> Operator:
    operator = operators.get(context.database(), name)
    if operator is None:
        raise ApiError(404, f"no operator named {name!r}")
    return operator


def _out(operator: Operator) -> dict[str, Any]:
    return operator.public(time.time())


@bp.get(BASE)
@operation("get", "Operator accounts of the web console (admins only)",
           response=OperatorListSchema, errors=(403,))
def list_operators() -> Any:
    _admin()
    now = time.time()
    return {"items": [o.public(now) for o in operators.all_operators(context.database())]}


@bp.post(BASE)
@operation("post", "Create an operator account (admins only)", request=OperatorSchema,
           response=OperatorSchema, status=201, errors=(409,))
def create_operator() -> Any:
    _admin()
    data = OperatorSchema().load(json_body())
    hashed = accounts.hash_password(data["password"])
    db = context.database()
    try:
        with db.transaction():
            created = operators.create(db, data["name"], data["role"], hashed, time.time())
            audit.record(db, context.actor(), "create", f"operators/{created.name}",
                         {"role": created.role, "password": "***"})
    except ConflictError:
        raise ApiError(409, f"an operator named {data['name']!r} exists",
                       {"name": ["already exists"]}) from None
    resp: Response = _json(_out(created), 201)
    resp.headers["Location"] = f"{BASE}/{created.name}"
    return resp


@bp.get(f"{BASE}/<name>")
@operation("get", "One operator account (admins only)", response=OperatorSchema,
           errors=(403, 404))
def get_operator(name: str) -> Any:
    _admin()
    return _out(_find(name))


@bp.patch(f"{BASE}/<name>")
@operation("patch", "Change an operator's role or password (admins only); ends the "
           "account's console sessions", request=OperatorChangeSchema,
           response=OperatorSchema, errors=(404,))
def change_operator(name: str) -> Any:
    _admin()
    data = OperatorChangeSchema().load(json_body())
    if not data:
        raise ApiError(422, "nothing to change", {"_schema": ["give role or password"]})
    hashed = accounts.hash_password(data["password"]) if "password" in data else None
    db = context.database()
    with db.transaction():
        if not operators.change(db, name, time.time(), role=data.get("role"),
                                password_hash=hashed):
            raise ApiError(404, f"no operator named {name!r}")
        audit.record(db, context.actor(), "update", f"operators/{name}",
                     {k: ("***" if k == "password" else v) for k, v in data.items()})
    return _out(_find(name))


@bp.delete(f"{BASE}/<name>")
@operation("delete", "Remove an operator account (admins only); its sessions end",
           status=204, errors=(404,))
def remove_operator(name: str) -> Any:
    _admin()
    db = context.database()
    with db.transaction():
        if not operators.remove(db, name):
            raise ApiError(404, f"no operator named {name!r}")
        audit.record(db, context.actor(), "delete", f"operators/{name}")
    return "", 204


@bp.post(f"{BASE}/<name>/unlock")
@operation("post", "Lift an operator's lock-out and forget its failed sign-ins (admins only)",
           response=OperatorSchema, errors=(404,))
def unlock_operator(name: str) -> Any:
    _admin()
    db = context.database()
    with db.transaction():
        if not operators.unlock(db, name, time.time()):
            raise ApiError(404, f"no operator named {name!r}")
        audit.record(db, context.actor(), "unlock", f"operators/{name}")
    return _out(_find(name))


def _json(body: dict[str, Any], status: int) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    return resp
