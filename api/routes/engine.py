"""The engine's own view of its state, read over the control channel."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.schemas import EngineStatusSchema
from b2bua import control

bp = Blueprint("engine", __name__)


def engine_request(op: str, **args: Any) -> Any:
    """Ask the engine; 503 problem when it does not answer."""
    try:
        return control.request(context.control_path(), op, **args)
    except control.ControlError as exc:
        raise ApiError(503, f"engine unavailable: {exc}") from exc


@bp.get("/api/v1/engine")
@operation("get", "Engine status, including the parameter values it is using",
           response=EngineStatusSchema, errors=(503,))
def status() -> Any:
    return engine_request("status")
