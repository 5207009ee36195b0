"""Parameters: list, read, and change (validated against the registry; acts live)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.schemas import ParameterListSchema, ParameterSchema, ParameterUpdateSchema
from b2bua.config.registry import PARAMETERS, Param, ParamError, lookup
from b2bua.storage import audit, params_store

bp = Blueprint("parameters", __name__)


def _describe(param: Param, value: Any) -> dict[str, Any]:
    return {
        "name": param.name,
        "value": value,
        "default": param.default,
        "kind": param.kind,
        "unit": param.unit,
        "minimum": param.minimum,
        "maximum": param.maximum,
        "choices": list(param.choices),
        "group": param.group,
        "description": param.description,
        "live": param.live,
    }


def _find(name: str) -> Param:
    try:
        return lookup(name)
    except KeyError:
        raise ApiError(404, f"no parameter named {name!r}") from None


@bp.get("/api/v1/parameters")
@operation("get", "Every parameter with its value, default and range",
           response=ParameterListSchema)
def list_parameters() -> Any:
    values = params_store.load_values(context.database())
    return {"items": [_describe(p, values[p.name]) for p in PARAMETERS]}


@bp.get("/api/v1/parameters/<name>")
@operation("get", "One parameter", response=ParameterSchema, errors=(404,))
def get_parameter(name: str) -> Any:
    param = _find(name)
    values = params_store.load_values(context.database())
    return _describe(param, values[param.name])


@bp.put("/api/v1/parameters/<name>")
@operation("put", "Change a parameter; the engine applies it within a second",
           request=ParameterUpdateSchema, response=ParameterSchema, errors=(404,))
def put_parameter(name: str) -> Any:
    param = _find(name)
    body = ParameterUpdateSchema().load(_json_body())
    db = context.database()
    try:
        with db.transaction():
            value = params_store.set_value(db, param.name, body["value"])
            audit.record(db, context.actor(), "update", f"parameter/{param.name}",
                         {"value": value})
    except ParamError as exc:
        raise ApiError(422, f"invalid value for {param.name}", {"value": [str(exc)]}) from None
    return _describe(param, value)


def _json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(422, "the body must be a JSON object", {"_schema": ["invalid JSON"]})
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object", {"_schema": ["not an object"]})
    return body
