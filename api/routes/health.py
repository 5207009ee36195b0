"""Liveness for load balancers and the start-up check; needs no token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api import context
from api.openapi import operation
from api.schemas import HealthSchema
from b2bua import control

bp = Blueprint("health", __name__)


@bp.get("/api/v1/health")
@operation("get", "API liveness and whether the engine answers", response=HealthSchema,
           public=True)
def health() -> dict[str, Any]:
    try:
        control.request(context.control_path(), "status", timeout=0.5)
        engine = "up"
    except control.ControlError:
        engine = "down"
    return {"status": "ok", "engine": engine}
