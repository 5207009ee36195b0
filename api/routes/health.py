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


@bp.get("/api/v1/health")
@operation("get", "API liveness, and whether the engine and the database answer",
           response=HealthSchema,
           public=True)
def health() -> dict[str, Any]:
    try:
        control.request(context.control_path(), "status", timeout=0.5)
        engine = "up"
    except control.ControlError:
        engine = "down"
    try:
        database = "up" if probe.answers(context.database()) else "down"
    except StorageError:
        database = "down"
    return {"status": "ok", "engine": engine, "database": database}
