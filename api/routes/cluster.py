"""The cluster as this node sees it (docs/cluster.md): the nodes listed in the shared
database with each one's life as this node's last sweep found it, Redis, the edge."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint
from marshmallow import Schema, fields, validate

from api import context
from api.openapi import operation
from api.routes.engine import engine_request
from b2bua.storage import cluster
from b2bua.storage.backend import StorageError

bp = Blueprint("cluster", __name__)

NODE_STATES = ("self", "alive", "suspected", "dead", "unknown")
# The database counts as down for this node once its watch has not swept for this long
# (it sweeps every second).
DATABASE_SILENCE = 3.0


class ClusterNodeSchema(Schema):
    name = fields.String(required=True)
    sip = fields.String(allow_none=True, required=True)
    api = fields.String(allow_none=True, required=True)
    started_at = fields.Float(required=True)
    state = fields.String(required=True, validate=validate.OneOf(NODE_STATES), metadata={
        "description": "self; alive (its life lock held); suspected (free, not 3 s yet); "
                       "dead (taken over); unknown (this node is on its own, or has not "
                       "swept yet)"})


class ClusterDatabaseSchema(Schema):
    state = fields.String(required=True, validate=validate.OneOf(("up", "down", "none")),
                          metadata={"description": "up: this node's watch swept within "
                                                   "3 s; down: not (see last_error); none: "
                                                   "on its own"})
    last_sweep_at = fields.Float(allow_none=True, required=True)
    errors = fields.Integer(required=True, metadata={"description": "failed sweeps"})
    last_error = fields.String(required=True)
    life_lost = fields.Integer(required=True, metadata={
        "description": "times the database dropped this node's life lock (a restart) and "
                       "it took it back"})
    jobs_handed_over = fields.Integer(required=True, metadata={
        "description": "jobs stopped here because another node took their lock after the "
                       "database dropped it"})


class ClusterSchema(Schema):
    node = fields.String(allow_none=True, required=True,
                         metadata={"description": "this node's name; null: on its own"})
    nodes = fields.List(fields.Nested(ClusterNodeSchema), required=True)
    redis = fields.String(required=True, metadata={
        "description": "up, down, rebuilding, starting, or none (no --redis)"})
    redis_live_nodes = fields.Integer(allow_none=True, required=True)
    edge = fields.String(required=True, metadata={"description": "SS_EDGE_ADDRESSES"})
    outbound_proxy = fields.String(required=True, metadata={"description": "SS_OUTBOUND_PROXY"})
    takeovers = fields.Integer(required=True,
                               metadata={"description": "dead nodes this node took over"})
    jobs = fields.List(fields.String(), required=True, metadata={
        "description": "the cluster's jobs this node runs: keepalive (NAT keep-alives to "
                       "registered phones), upstream (registrations to vendors)"})
    database = fields.Nested(ClusterDatabaseSchema, required=True)


@bp.get("/api/v1/cluster")
@operation("get", "The cluster's nodes and their life, Redis and the edge, as this node "
                  "sees them", response=ClusterSchema, errors=(503,))
def cluster_view() -> Any:
    view: dict[str, Any] | None = engine_request("cluster")
    watch = (view or {}).get("watch") or {}
    states: dict[str, str] = watch.get("nodes") or {}
    params_edge = "" if view is None else str(view["edge"])
    try:
        rows = cluster.nodes(context.database())
    except StorageError:  # the database away: the nodes as the last sweep saw them
        rows = [cluster.NodeRow(name, None, None, 0.0) for name in states]
    swept = float(watch.get("last_sweep_at") or 0.0)
    database = "none" if not watch else (
        "up" if time.time() - swept <= DATABASE_SILENCE else "down")
    return {
        "node": None if view is None else view["node"],
        "nodes": [{"name": row.name, "sip": row.sip, "api": row.api,
                   "started_at": row.started_at, "state": states.get(row.name, "unknown")}
                  for row in rows],
        "redis": "none" if view is None else view["redis"],
        "redis_live_nodes": None if view is None else view["redis_live_nodes"],
        "edge": params_edge,
        "outbound_proxy": "" if view is None else str(view["outbound_proxy"]),
        "takeovers": int(watch.get("takeovers", 0)),
        "jobs": [str(job) for job in watch.get("jobs", [])],
        "database": {"state": database, "last_sweep_at": swept or None,
                     "errors": int(watch.get("errors", 0)),
                     "last_error": str(watch.get("last_error", "")),
                     "life_lost": int(watch.get("life_lost", 0)),
                     "jobs_handed_over": int(watch.get("jobs_handed_over", 0))},
    }
