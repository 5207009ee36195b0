"""Liveness for load balancers and the start-up check; needs no token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api import context
from api.openapi import operation
from api.schemas import HealthSchema
from b2bua import control
from b2bua.storage import probe
from b2bua.storage.backend import StorageError

bp = Blueprint("health", __name__)

# A busy engine answers its control socket late; a dead one refuses at once. Within a
# load balancer's usual probe timeout, so a loaded engine is not reported down.
HEALTH_TIMEOUT = 2.0


@bp.get("/api/v1/health")
@operation("get", "API liveness, and whether the engine and the database answer",
           response=HealthSchema,
           public=True)
def health() -> dict[str, Any]:
    cluster: dict[str, Any] | None = None
    try:
        cluster = control.request(context.control_path(), "cluster", timeout=HEALTH_TIMEOUT)
        engine = "up"
    except control.ControlError:
        engine = "down"
    try:
        database = "up" if probe.answers(context.database()) else "down"
    except StorageError:
        database = "down"
    answer: dict[str, Any] = {"status": "ok", "engine": engine, "database": database}
    if cluster is not None:
        answer.update(node=cluster["node"], redis=cluster["redis"])
    return answer
