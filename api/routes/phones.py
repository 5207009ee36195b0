"""Phone accounts, their live registrations, and the NAT keep-alive counters."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, ValidationError, fields, validate

from api.control_schemas import CallRateFields, DurationFields, check_controls
from api.errors import ApiError
from api.gateway_schemas import refuse_taken_username
from api.number_schemas import DialPlans
from api.openapi import operation
from api.resources import Resource
from api.routes.engine import engine_request

USERNAME = validate.Regexp(r"^[0-9A-Za-z+*#._-]{1,64}\Z",
                           error="1-64 of 0-9 A-Z a-z + * # . _ -")


class PhoneSchema(DialPlans, CallRateFields, DurationFields):
    id = fields.Integer(dump_only=True)
    username = fields.String(required=True, validate=USERNAME,
                             metadata={"description": "also the phone's number"})
    password = fields.String(load_only=True, validate=validate.Length(min=1, max=128),
                             metadata={"description": "write-only"})
    display_name = fields.String(load_default=None, allow_none=True,
                                 validate=validate.Length(max=64))
    capacity = fields.Integer(strict=True, load_default=None, allow_none=True,
                              validate=validate.Range(0, 1000),
                              metadata={"description": "concurrent calls; null = unlimited"})
    enabled = fields.Boolean(load_default=True)
    created_at = fields.Float(dump_only=True)
    updated_at = fields.Float(dump_only=True)


def check_phone(data: dict[str, Any], current: dict[str, Any] | None) -> None:
    errors = check_controls(data)
    if errors:
        raise ValidationError(errors)
    if current is None and not data.get("password"):
        raise ValidationError({"password": ["a phone needs a password"]})
    if "password" in data and not data["password"]:
        raise ValidationError({"password": ["must not be empty"]})
    if data.get("username"):
        refuse_taken_username(data["username"], phone_id=(current or {}).get("id"))


phones = Resource(
    name="phones",
    table="phones",
    schema=PhoneSchema,
    write_only=frozenset({"password"}),
    check=check_phone,
    summary="phone accounts",
)

bp = Blueprint("registrations", __name__)


class PhoneRegistrationSchema(Schema):
    id = fields.String(required=True)
    username = fields.String(required=True)
    contact = fields.String(required=True)
    source = fields.String(required=True, metadata={"description": "IP:port it registered from"})
    transport = fields.String(required=True)
    nat = fields.Boolean(required=True)
    expires_at = fields.Float(required=True)
    registered_at = fields.Float(required=True)
    user_agent = fields.String(required=True)
    path = fields.List(fields.String(), required=True, metadata={
        "description": "the Path (RFC 3327) it registered through, nearest proxy first; "
                       "calls and keep-alives to it take this route"})
    kind = fields.String(required=True, validate=validate.OneOf(["phone", "mapping_gateway"]),
                         metadata={"description": "what registered: a phone account, or a "
                                                  "password-mode mapping gateway (a trunk)"})
    mapping_gateway_id = fields.Integer(
        allow_none=True, required=True,
        metadata={"description": "the mapping gateway that registered (kind mapping_gateway)"})
    mapping_gateway = fields.String(allow_none=True, required=True,
                                    metadata={"description": "its name"})
    customer = fields.String(allow_none=True, metadata={
        "description": "behind a trusted edge (docs/cluster.md): the transport:IP:port the "
                       "edge received the REGISTER from, which identifies it as "
                       "``source`` does without an edge"})


class RegistrationListSchema(Schema):
    items = fields.List(fields.Nested(PhoneRegistrationSchema), required=True)


class RemovedSchema(Schema):
    removed = fields.Integer(required=True)


class KeepAliveSchema(Schema):
    cycles = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    restarted = fields.Integer(required=True)
    sent = fields.Integer(required=True)
    missed_last_cycle = fields.Integer(required=True)
    missed_total = fields.Integer(required=True)
    phones_last_cycle = fields.Integer(required=True)
    last_cycle_at = fields.Float(required=True)
    last_cycle_seconds = fields.Float(required=True)


@bp.get("/api/v1/registrations")
@operation("get", "Live registrations of phones and mapping gateways",
           response=RegistrationListSchema, errors=(422, 503),
           parameters=[{"in": "query", "name": name, "required": False,
                        "schema": {"type": "string"}} for name in ("username", "kind")])
def list_registrations() -> Any:
    items: list[dict[str, Any]] = engine_request("registrations")
    for name in ("username", "kind"):
        wanted = request.args.get(name)
        if wanted is not None:
            items = [i for i in items if i[name] == wanted]
    return {"items": items}


@bp.delete("/api/v1/registrations/<username>")
@operation("delete", "Unregister a phone or a mapping gateway by its username (every "
           "contact, or ?contact=URI)",
           response=RemovedSchema, errors=(404, 503),
           parameters=[{"in": "query", "name": "contact", "required": False,
                        "schema": {"type": "string"}}])
def unregister(username: str) -> Any:
    result: dict[str, int] = engine_request("unregister", username=username,
                                            contact=request.args.get("contact"))
    if not result["removed"]:
        raise ApiError(404, f"no registration for {username!r}")
    return result


@bp.get("/api/v1/keepalive")
@operation("get", "NAT keep-alive cycles: sent, completed, restarted, phones missed",
           response=KeepAliveSchema, errors=(503,))
def keepalive() -> Any:
    return engine_request("keepalive")
