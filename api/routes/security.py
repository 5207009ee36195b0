"""Security counters and suspensions, from the engine's live state."""

from __future__ import annotations

import ipaddress
from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, fields

from api.cluster_merge import SCOPE, merged_counters, merged_items
from api.errors import ApiError
from api.openapi import operation
from api.routes.engine import engine_request

bp = Blueprint("security", __name__)

_COUNTER = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class SecurityStatsSchema(Schema):
    dropped = _COUNTER
    rejected = _COUNTER
    challenged = _COUNTER
    authenticated = _COUNTER
    suspended = _COUNTER
    suspended_now = fields.Integer(required=True)
    auth_sessions = fields.Integer(required=True)
    auth_sessions_evicted = fields.Integer(required=True)
    failure_entries = fields.Integer(required=True)
    nonce_counts = fields.Integer(required=True)
    log_lines_suppressed = fields.Integer(required=True)
    nodes = fields.Dict(keys=fields.String(), values=fields.Raw(), metadata={
        "description": "a cluster node: each live node's own counters, by name"})
    unreachable = fields.List(fields.String(), metadata={
        "description": "live nodes whose API did not answer (not in the sums)"})


class SuspensionSchema(Schema):
    terminal = fields.String(required=True, metadata={"description": "username"})
    source_ip = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "authentication/registration"})
    since = fields.Float(required=True)
    until = fields.Float(required=True)
    failures = fields.Integer(required=True)
    node = fields.String(metadata={"description": "the node listing it (a cluster)"})


class SuspensionListSchema(Schema):
    items = fields.List(fields.Nested(SuspensionSchema), required=True)
    unreachable = fields.List(fields.String(), metadata={
        "description": "live nodes whose API did not answer"})


class LiftedSchema(Schema):
    lifted = fields.Integer(required=True)


@bp.get("/api/v1/security/stats")
@operation("get", "Policy counters: dropped, rejected, challenged, authenticated, suspended",
           response=SecurityStatsSchema, errors=(503,), parameters=[SCOPE])
def security_stats() -> Any:
    return merged_counters("/api/v1/security/stats", engine_request("security"))


@bp.get("/api/v1/suspensions")
@operation("get", "Terminals suspended now, with their end time (on a cluster node: on "
                  "every live node, each once)", response=SuspensionListSchema,
           errors=(503,), parameters=[SCOPE])
def list_suspensions() -> Any:
    return merged_items("/api/v1/suspensions", engine_request("suspensions"),
                        key=lambda s: (s["terminal"], s["source_ip"]))


@bp.delete("/api/v1/suspensions/<username>")
@operation("delete", "Lift the suspensions of a username (all sources, or ?source_ip=)",
           response=LiftedSchema, errors=(404, 422, 503),
           parameters=[{"in": "query", "name": "source_ip", "required": False,
                        "schema": {"type": "string"}}])
def lift_suspension(username: str) -> Any:
    source_ip = request.args.get("source_ip")
    if source_ip is not None:
        try:
            ipaddress.ip_address(source_ip)
        except ValueError:
            raise ApiError(422, "source_ip is not an IP address",
                           {"source_ip": ["not an IP address"]}) from None
    result: dict[str, int] = engine_request("lift", username=username, source_ip=source_ip)
    if not result["lifted"]:
        raise ApiError(404, f"no suspension for {username!r}")
    return result
