"""Active calls and engine counters, from the engine's live state."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, fields

from api import context
from api.cluster_merge import SCOPE, merged_counters, merged_items, node_answer
from api.errors import ApiError
from api.openapi import operation
from api.routes.engine import engine_request
from api.routes.phones import PhoneRegistrationSchema
from b2bua.storage import audit

bp = Blueprint("calls", __name__)


class ActiveCallSchema(Schema):
    id = fields.Integer(required=True)
    state = fields.String(required=True)
    caller = fields.String(required=True)
    callee = fields.String(required=True)
    caller_name = fields.String(allow_none=True, metadata={
        "description": "the From display name as received (anyone's text: show it escaped)"})
    user_agent = fields.String(allow_none=True)
    source = fields.String(required=True)
    mapping_gateway = fields.String(allow_none=True)
    routing_gateway = fields.String(allow_none=True)
    attempts = fields.Integer(required=True)
    phone = fields.String(allow_none=True)
    callee_phone = fields.String(allow_none=True)
    call_id_in = fields.String(required=True)
    call_id_out = fields.String(allow_none=True)
    start_at = fields.Float(required=True)
    ringing_at = fields.Float(allow_none=True)
    answer_at = fields.Float(allow_none=True)
    node = fields.String(metadata={"description": "the node carrying it (a cluster)"})


class ActiveCallListSchema(Schema):
    items = fields.List(fields.Nested(ActiveCallSchema), required=True)
    unreachable = fields.List(fields.String(), metadata={
        "description": "live nodes whose API did not answer (their calls are missing)"})


class StatsSchema(Schema):
    attempts = fields.Integer(required=True)
    answered = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    active = fields.Integer(required=True)
    counters = fields.Dict(keys=fields.String(), values=fields.Raw())
    nodes = fields.Dict(keys=fields.String(), values=fields.Raw(), metadata={
        "description": "a cluster node: each live node's own counters, by name"})
    unreachable = fields.List(fields.String(), metadata={
        "description": "live nodes whose API did not answer (not in the sums)"})


@bp.get("/api/v1/calls")
@operation("get", "Calls up now (on a cluster node: on every live node)",
           response=ActiveCallListSchema, errors=(503,), parameters=[SCOPE])
def list_calls() -> Any:
    return merged_items("/api/v1/calls", engine_request("calls"))


class HungUpSchema(Schema):
    id = fields.Integer(required=True)
    hung_up = fields.Boolean(required=True)


_NODE = {"in": "query", "name": "node", "required": False, "schema": {"type": "string"},
         "description": "on a cluster: the node carrying the call (GET /calls items' "
                        "node); this node when not given"}


@bp.delete("/api/v1/calls/<int:call_id>")
@operation("delete", "Hang up a call now: BYE to both legs once answered, else the caller "
                     "gets 503 and the vendor a CANCEL; its CDR says termination_reason "
                     "operator", response=HungUpSchema, errors=(404, 503),
           parameters=[_NODE, SCOPE])
def hang_up(call_id: int) -> Any:
    node = request.args.get("node")
    if node:
        remote = node_answer(node, f"/api/v1/calls/{call_id}", method="DELETE")
        if remote is not None:
            status, body = remote
            if status != 200:
                raise ApiError(status, str((body or {}).get("detail") or f"node {node!r}: "
                                                                          f"{status}"))
            return body
    found = engine_request("hangup", call=call_id)["found"]
    if not found:
        raise ApiError(404, f"no call {call_id} up now")
    audit.record(context.database(), context.actor(), "hangup", f"calls/{call_id}")
    return {"id": call_id, "hung_up": True}


@bp.get("/api/v1/stats")
@operation("get", "Call and SIP counters since start (on a cluster node: summed over the "
                  "live nodes, each one's under nodes)", response=StatsSchema,
           errors=(503,), parameters=[SCOPE])
def stats() -> Any:
    snapshot: dict[str, Any] = engine_request("stats")
    head = {k: snapshot.pop(k) for k in ("attempts", "answered", "failed", "active")}
    return merged_counters("/api/v1/stats", {**head, "counters": snapshot})


class RelayWorkerSchema(Schema):
    index = fields.Integer(required=True)
    node = fields.String(metadata={"description": "on a cluster node: whose relay worker"})
    pid = fields.Integer(allow_none=True)
    alive = fields.Boolean(required=True)
    ports = fields.String(required=True, metadata={"description": "its slice of --media-ports"})
    sessions = fields.Integer(required=True)
    ports_in_use = fields.Integer(required=True, metadata={"description": "RTP/RTCP pairs"})
    loop_lag_ms = fields.Float(required=True, metadata={"description": "mean over 2 s"})
    starts = fields.Integer(required=True, metadata={"description": "more than 1: restarted"})


class LoopLagSchema(Schema):
    mean_ms = fields.Float(required=True)
    peak_ms = fields.Float(required=True)
    worst_ms = fields.Float(required=True)


class MediaStatusSchema(Schema):
    workers = fields.List(fields.Nested(RelayWorkerSchema), required=True,
                          metadata={"description": "empty when the relay runs in the engine"})
    ports_in_use = fields.Integer(required=True)
    ports_free = fields.Integer(required=True)
    engine_loop_lag = fields.Nested(LoopLagSchema, required=True)
    totals = fields.Dict(keys=fields.String(), values=fields.Dict(
        keys=fields.String(), values=fields.Integer()), required=True,
        metadata={"description": "finished calls' relayed media by payload cipher"})
    nodes = fields.Dict(keys=fields.String(), values=fields.Raw(), metadata={
        "description": "on a cluster node: each live node's own view"})
    unreachable = fields.List(fields.String(), metadata={
        "description": "live nodes whose API did not answer (not in the sums)"})


@bp.get("/api/v1/media")
@operation("get", "Media relay: workers, ports, event-loop lag, relayed totals by cipher "
                  "(on a cluster node: every live node's, ports and totals summed, each "
                  "worker naming its node)", response=MediaStatusSchema, errors=(503,),
           parameters=[SCOPE])
def media_status() -> Any:
    local: dict[str, Any] = engine_request("media")
    merged = merged_counters("/api/v1/media", local)
    nodes: dict[str, dict[str, Any]] | None = merged.get("nodes")
    if not nodes:
        return local
    # Workers listed per node and numbered across the cluster; the lag is the most
    # loaded engine's (a sum of lags means nothing).
    merged["workers"] = [{**worker, "node": name} for name, view in nodes.items()
                         for worker in view.get("workers", [])]
    for index, worker in enumerate(merged["workers"]):
        worker["index"] = index
    merged["engine_loop_lag"] = max((view["engine_loop_lag"] for view in nodes.values()),
                                    key=lambda lag: float(lag["mean_ms"]))
    return merged


class GatewayStatusSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    enabled = fields.Boolean(required=True)
    current_calls = fields.Integer(required=True)
    total_calls = fields.Integer(required=True, metadata={"description": "since start"})
    retry_after_until = fields.Float(
        allow_none=True,
        metadata={"description": "out of routing until (a vendor's Retry-After), Unix time"})


class GatewayStatusListSchema(Schema):
    items = fields.List(fields.Nested(GatewayStatusSchema), required=True)


class MappingGatewayStatusSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    enabled = fields.Boolean(required=True)
    auth_mode = fields.String(required=True)
    current_calls = fields.Integer(required=True)
    registrations = fields.List(
        fields.Nested(PhoneRegistrationSchema), required=True,
        metadata={"description": "where a password-mode gateway is registered from (its "
                                 "live bindings, as in GET /registrations); empty when not"})


class MappingGatewayStatusListSchema(Schema):
    items = fields.List(fields.Nested(MappingGatewayStatusSchema), required=True)


@bp.get("/api/v1/mapping-gateways/status")
@operation("get", "Live state of mapping gateways: calls, registration", errors=(503,),
           response=MappingGatewayStatusListSchema)
def mapping_gateway_status() -> Any:
    return {"items": engine_request("mapping_gateways")}


@bp.get("/api/v1/routing-gateways/status")
@operation("get", "Live state of routing gateways: calls, Retry-After", errors=(503,),
           response=GatewayStatusListSchema)
def gateway_status() -> Any:
    return {"items": engine_request("gateways")}
