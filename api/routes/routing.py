"""The routing dry run: what a call would do now, without placing it (docs/api.md,
"Routing dry run"). The engine answers it from its live state (``b2bua/calls/dryrun.py``);
it changes nothing, so read tokens may ask it and nothing is audited."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api import context
from api.converters import SQLITE_MAX_INT
from api.errors import ApiError
from api.openapi import operation
from api.resources import json_body
from api.routes.engine import engine_request
from api.routes.phones import USERNAME
from b2bua.storage import crud

bp = Blueprint("routing", __name__)

# A SIP user part as a number may carry it (RFC 3261 25.1 "user", and # as dial plans do).
NUMBER = validate.Regexp(r"^[0-9A-Za-z+*#._~!$&'()=,;?/%-]{1,128}\Z",
                         error="1-128 characters of a SIP user part")
NAME_MAX = 64


class GatewayRef(fields.Field[int | str]):
    """A mapping gateway by id (an integer) or by name (a string)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= SQLITE_MAX_INT:
                raise ValidationError("an id is a positive integer")
            return value
        if isinstance(value, str):
            if not 1 <= len(value) <= NAME_MAX:
                raise ValidationError(f"a name is 1-{NAME_MAX} characters")
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValidationError("not valid text") from None
            return value
        raise ValidationError("an id (integer) or a name (string)")


class RoutingTestSchema(Schema):
    caller = fields.String(required=True, validate=NUMBER,
                           metadata={"description": "the From user as the INVITE would carry it"})
    callee = fields.String(required=True, validate=NUMBER,
                           metadata={"description": "the Request-URI user"})
    mapping_gateway = GatewayRef(metadata={
        "description": "the customer trunk the call comes from: its id or its name",
        "oneOf": [{"type": "integer", "minimum": 1, "maximum": SQLITE_MAX_INT},
                  {"type": "string", "minLength": 1, "maxLength": NAME_MAX}]})
    phone = fields.String(validate=USERNAME, metadata={
        "description": "instead of mapping_gateway: the phone account the call comes from"})

    @validates_schema
    def _one_origin(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if ("mapping_gateway" in data) == ("phone" in data):
            raise ValidationError("give the origin: mapping_gateway or phone, not both",
                                  "mapping_gateway")


def _text(**kw: Any) -> fields.String:
    return fields.String(required=True, **kw)


def _maybe(field: type[fields.Field[Any]], **kw: Any) -> fields.Field[Any]:
    return field(required=True, allow_none=True, **kw)


class RouteTestOriginSchema(Schema):
    kind = _text(validate=validate.OneOf(["mapping_gateway", "phone"]))
    id = fields.Integer(required=True)
    name = _text()
    enabled = fields.Boolean(required=True)
    current_calls = fields.Integer(required=True)
    capacity = _maybe(fields.Integer)


class RouteTestNumbersSchema(Schema):
    caller = _text()
    callee = _text()


class RouteTestStageSchema(Schema):
    side = fields.String(metadata={"description": "mapping or phone (the origin's stages)"})
    gateway = fields.String(metadata={"description": "whose rules (the origin's stages)"})
    stage = _text(metadata={"description": "the field applied: caller_dial_plan, "
                                           "callee_dial_plan, caller_transform, "
                                           "callee_transform, pai_dial_plan"})
    number = _text(validate=validate.OneOf(["caller", "callee", "pai"]))
    input = _text()
    output = _text()
    rule = _maybe(fields.String, metadata={
        "description": "the dial plan rule or transform row applied; null: none"})
    detail = _text()


class RouteTestListCheckSchema(Schema):
    gateway = fields.String(metadata={"description": "whose list (the origin's checks)"})
    check = _text(validate=validate.OneOf(["caller_groups", "callee_groups",
                                           "callee_prefixes"]))
    number = _text()
    rule = _text(metadata={"description": "the list in words; empty: none"})
    verdict = _text(validate=validate.OneOf(["pass", "refuse", "none"]))
    decided_by = _maybe(fields.String, metadata={
        "description": "the group holding the number, or the prefix it starts with"})
    reason = _maybe(fields.String, metadata={"description": "the refusal, as the CDR says"})


class RouteTestPhoneSchema(Schema):
    username = _text()
    reachable = fields.Boolean(required=True)
    contact = _maybe(fields.String)
    source = _maybe(fields.String)
    nat = _maybe(fields.Boolean)
    code = _maybe(fields.Integer, metadata={"description": "what the caller hears when "
                                                           "unreachable"})
    reason = _maybe(fields.String)


class RouteTestOutcomeSchema(Schema):
    outcome = _text(validate=validate.OneOf(["vendors", "phone", "refused"]))
    stage = _text(validate=validate.OneOf(["admission", "lists", "phone", "routing"]),
                  metadata={"description": "where it was decided"})
    code = _maybe(fields.Integer, metadata={"description": "the caller's final code when "
                                                           "refused"})
    reason = _text()
    by_lists = fields.Boolean(required=True)


class RouteTestSentSchema(Schema):
    caller = _text()
    callee = _text()
    pai = _maybe(fields.String, metadata={"description": "P-Asserted-Identity; null: none"})


class RouteTestDnsSchema(Schema):
    name = _text()
    state = _text(validate=validate.OneOf(["cached", "stale", "unresolved", "no_address"]))
    targets = fields.List(fields.String(), required=True)
    detail = _text()


REASONS = ["route", "no_prefix_match", "disabled", "full", "retry_after", "cut_by_terminate",
           "refused_by_lists", "came_from", "switch_limit"]


class RouteTestGatewaySchema(Schema):
    id = fields.Integer(required=True)
    name = _text()
    enabled = fields.Boolean(required=True)
    verdict = _text(validate=validate.OneOf(["in", "out"]))
    reason = _text(validate=validate.OneOf(REASONS))
    detail = _text()
    position = _maybe(fields.Integer, metadata={"description": "its attempt number"})
    prefixes = fields.List(fields.String(), required=True)
    prefix = _maybe(fields.String, metadata={
        "description": "its longest prefix starting the callee (empty: it has none); null: "
                       "none matches"})
    prefix_mode = _text()
    priority = fields.Integer(required=True)
    rank = _maybe(fields.Integer, metadata={
        "description": "its place in the routing order before capacity and holds"})
    order_by = _maybe(fields.String, metadata={
        "description": "what put it after the gateway ranked before it: prefix, priority, "
                       "load, total_calls or id"})
    order = _text()
    capacity = _maybe(fields.Integer)
    current_calls = fields.Integer(required=True)
    total_calls = fields.Integer(required=True)
    load_ = fields.Float(required=True, data_key="load", metadata={
        "description": "current calls / capacity (0 without a capacity)"})
    retry_after_until = _maybe(fields.Float)
    host = _text()
    port = _maybe(fields.Integer)
    transport = _text()
    target = _maybe(fields.String)
    dns = fields.Nested(RouteTestDnsSchema, required=True, allow_none=True)
    lists = fields.List(fields.Nested(RouteTestListCheckSchema), required=True)
    stages = fields.List(fields.Nested(RouteTestStageSchema), required=True)
    sent = fields.Nested(RouteTestSentSchema, required=True, allow_none=True)


class RouteTestVendorSchema(Schema):
    position = fields.Integer(required=True)
    id = fields.Integer(required=True)
    name = _text()
    target = _maybe(fields.String)
    caller = _text()
    callee = _text()
    pai = _maybe(fields.String)


class RoutingTestResultSchema(Schema):
    at = fields.Float(required=True)
    origin = fields.Nested(RouteTestOriginSchema, required=True)
    received = fields.Nested(RouteTestNumbersSchema, required=True)
    platform = fields.Nested(RouteTestNumbersSchema, required=True, allow_none=True)
    stages = fields.List(fields.Nested(RouteTestStageSchema), required=True)
    lists = fields.List(fields.Nested(RouteTestListCheckSchema), required=True)
    phone = fields.Nested(RouteTestPhoneSchema, required=True, allow_none=True)
    result = fields.Nested(RouteTestOutcomeSchema, required=True)
    route = fields.List(fields.Nested(RouteTestVendorSchema), required=True)
    gateways = fields.List(fields.Nested(RouteTestGatewaySchema), required=True)


def _origin(data: dict[str, Any]) -> tuple[str, int | str]:
    """The origin as stored: 422 naming the field when there is no such one."""
    db = context.database()
    if "phone" in data:
        rows = crud.list_after(db, "phones", 0, 1, {"username": data["phone"]})
        if not rows:
            raise ApiError(422, "the request has invalid fields",
                           {"phone": [f"no phone {data['phone']!r}"]})
        return "phone", str(rows[0]["username"])
    ref = data["mapping_gateway"]
    if isinstance(ref, int):
        row = crud.get(db, "mapping_gateways", ref)
    else:
        found = crud.list_after(db, "mapping_gateways", 0, 1, {"name": ref})
        row = found[0] if found else None
    if row is None:
        raise ApiError(422, "the request has invalid fields",
                       {"mapping_gateway": [f"no mapping gateway {ref!r}"]})
    return "mapping_gateway", int(row["id"])


@bp.post("/api/v1/routing/test")
@operation("post", "Routing dry run: what a call from a mapping gateway (or a phone) with "
                   "these numbers would do now, without placing it: each number stage, the "
                   "lists, and every routing gateway in or out and why. Changes nothing; "
                   "read tokens may use it", request=RoutingTestSchema,
           response=RoutingTestResultSchema, errors=(503,))
def routing_test() -> Any:
    data = RoutingTestSchema().load(json_body())
    kind, key = _origin(data)
    result: dict[str, Any] = engine_request("route_test", origin=kind, origin_id=key,
                                            caller=data["caller"], callee=data["callee"])
    if "unknown" in result:  # stored, not loaded by the engine yet (it is within 0.2 s)
        raise ApiError(503, f"the engine has not loaded this {kind.replace('_', ' ')} yet; "
                            "retry", headers={"Retry-After": "1"})
    return result
