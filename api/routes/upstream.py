"""Registration of the softswitch to vendors: one per routing gateway, and its live state."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.resources import json_body
from api.routes.engine import engine_request
from api.routes.gateways import routing_gateways
from b2bua.options import HostPort
from b2bua.storage import audit, gateway_registrations

bp = Blueprint("upstream", __name__)
URL = "/api/v1/routing-gateways/<int:gateway_id>/registration"


def _host_port(value: str) -> None:
    try:
        HostPort.parse(value if ":" in value else f"{value}:5060")
    except ValueError:
        raise ValidationError("registrar is IP[:PORT]") from None


class UpstreamRegistrationSchema(Schema):
    enabled = fields.Boolean(load_default=True)
    registrar = fields.String(load_default=None, allow_none=True, validate=_host_port,
                              metadata={"description": "IP[:PORT]; null: the gateway's"})
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    auth_username = fields.String(load_default=None, allow_none=True,
                                  validate=validate.Length(min=1, max=64),
                                  metadata={"description": "null: username"})
    password = fields.String(load_only=True, load_default=None, allow_none=True,
                             validate=validate.Length(max=128),
                             metadata={"description": "write-only"})
    host_name = fields.String(load_default=None, allow_none=True,
                              validate=validate.Length(min=1, max=128),
                              metadata={"description": "Contact host; null: public address"})
    expire = fields.Integer(strict=True, load_default=None, allow_none=True,
                            validate=validate.Range(20, 7200),
                            metadata={"description": "seconds; null: SS_SIP_USER_AGENT_EXPIRE"})
    updated_at = fields.Float(dump_only=True)


class UpstreamStateSchema(Schema):
    routing_gateway_id = fields.Integer(required=True)
    routing_gateway = fields.String(required=True)
    registrar = fields.String(required=True)
    username = fields.String(required=True)
    state = fields.String(required=True, metadata={
        "description": "idle, registering, registered, failed, unregistering, unregistered"})
    last_code = fields.Integer(allow_none=True)
    reason = fields.String(required=True)
    expires_at = fields.Float(allow_none=True)
    retry_at = fields.Float(allow_none=True)
    registered_at = fields.Float(allow_none=True)
    refreshes = fields.Integer(required=True)
    call_id = fields.String(required=True)


class UpstreamListSchema(Schema):
    items = fields.List(fields.Nested(UpstreamStateSchema), required=True)


def _row(gateway_id: int) -> dict[str, Any] | None:
    row = gateway_registrations.get(context.database(), gateway_id)
    if row is None:
        return None
    out = {k: row[k] for k in gateway_registrations.SETTINGS if k != "password"}
    out["enabled"] = bool(out["enabled"])
    out["updated_at"] = row["updated_at"]
    return out


@bp.get(URL)
@operation("get", "A routing gateway's registration settings", response=UpstreamRegistrationSchema,
           errors=(404,))
def get_registration(gateway_id: int) -> Any:
    routing_gateways.fetch(context.database(), gateway_id)
    row = _row(gateway_id)
    if row is None:
        raise ApiError(404, f"routing gateway {gateway_id} has no registration")
    return row


@bp.put(URL)
@operation("put", "Set a routing gateway's registration (acts at once; disabling "
           "unregisters)", request=UpstreamRegistrationSchema, response=UpstreamRegistrationSchema,
           errors=(404,))
def put_registration(gateway_id: int) -> Any:
    db = context.database()
    routing_gateways.fetch(db, gateway_id)
    data = UpstreamRegistrationSchema().load(json_body())
    current = gateway_registrations.get(db, gateway_id)
    if data["password"] is None and current is not None:
        data["password"] = current["password"]  # write-only: keep the stored one
    with db.transaction():
        gateway_registrations.put(db, gateway_id, data, time.time())
        audit.record(db, context.actor(), "update",
                     f"routing-gateways/{gateway_id}/registration",
                     {k: ("***" if k == "password" else v) for k, v in data.items()})
    return _row(gateway_id)


@bp.delete(URL)
@operation("delete", "Remove a routing gateway's registration (unregisters)", status=204,
           errors=(404,))
def delete_registration(gateway_id: int) -> Any:
    db = context.database()
    if _row(gateway_id) is None:
        raise ApiError(404, f"routing gateway {gateway_id} has no registration")
    with db.transaction():
        gateway_registrations.delete(db, gateway_id)
        audit.record(db, context.actor(), "delete",
                     f"routing-gateways/{gateway_id}/registration")
    return "", 204


@bp.get("/api/v1/upstream-registrations")
@operation("get", "State of every registration to vendors", response=UpstreamListSchema,
           errors=(503,))
def upstream_state() -> Any:
    return {"items": engine_request("upstream")}
