"""Gateway quality series: ASR, ACD, PDD and NER per minute, hour or day, from the
stored roll-up of finished calls (docs/gateway-quality.md)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, fields

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.resources import float_arg, int_arg, known_args
from b2bua.stats.quality import KINDS, STEPS, Cell
from b2bua.storage import gateway_stats

bp = Blueprint("quality", __name__)

MAX_POINTS = 2000
DEFAULT_SPAN = 3600.0
_ARGS = {"kind", "id", "from", "to", "step"}
_PARAMETERS = [
    {"in": "query", "name": "kind", "required": False,
     "schema": {"type": "string", "enum": list(KINDS)},
     "description": "mapping or routing gateways (default: both)"},
    {"in": "query", "name": "id", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 2**62},
     "description": "one gateway (with kind)"},
    {"in": "query", "name": "from", "required": False, "schema": {"type": "number"},
     "description": "Unix time, rounded down to the step (default: an hour before to)"},
    {"in": "query", "name": "to", "required": False, "schema": {"type": "number"},
     "description": "Unix time, end of the range, excluded (default: now)"},
    {"in": "query", "name": "step", "required": False,
     "schema": {"type": "integer", "minimum": 60, "maximum": 86400 * 366, "default": 60},
     "description": "seconds per point, a multiple of 60; read from the day figures "
                    "when a multiple of 86400, else the hour figures when a multiple of "
                    "3600, else the minute figures"},
]


class FiguresSchema(Schema):
    attempts = fields.Integer(required=True)
    answered = fields.Integer(required=True)
    asr = fields.Float(allow_none=True, metadata={"description": "answered / attempts"})
    acd = fields.Float(allow_none=True, metadata={"description": "talk seconds / answered"})
    talk_seconds = fields.Float(required=True)
    ner = fields.Float(allow_none=True, metadata={
        "description": "answered or failed by the called user / attempts"})
    pdd_median = fields.Float(allow_none=True, metadata={
        "description": "seconds, upper edge of its histogram bucket"})
    pdd_p95 = fields.Float(allow_none=True)
    pdd_count = fields.Integer(required=True)
    pdd_mean = fields.Float(allow_none=True)
    failures = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                           metadata={"description": "final code (or outcome) -> count"})


class PointSchema(FiguresSchema):
    at = fields.Integer(required=True, metadata={"description": "the period's start"})


class SeriesSchema(Schema):
    kind = fields.String(required=True)
    id = fields.Integer(allow_none=True, metadata={"description": "null: all gateways"})
    name = fields.String(allow_none=True)
    summary = fields.Nested(FiguresSchema, required=True)
    points = fields.List(fields.Nested(PointSchema), required=True, metadata={
        "description": "periods with calls only, in time order"})


class QualitySchema(Schema):
    step = fields.Integer(required=True)
    source_step = fields.Integer(required=True)
    start = fields.Integer(required=True, data_key="from")
    end = fields.Float(required=True, data_key="to")
    series = fields.List(fields.Nested(SeriesSchema), required=True)
    totals = fields.List(fields.Nested(SeriesSchema), required=True, metadata={
        "description": "per kind, every gateway of it together"})


def _series(kind: str, gw_id: int | None, name: str | None, step: int,
            cells: list[tuple[int, Cell]]) -> dict[str, Any]:
    by_point: dict[int, Cell] = {}
    summary = Cell()
    for at, cell in cells:
        by_point.setdefault(at // step * step, Cell()).merge(cell)
        summary.merge(cell)
    return {"kind": kind, "id": gw_id, "name": name, "summary": summary.figures(),
            "points": [{"at": at, **cell.figures()} for at, cell in sorted(by_point.items())]}


@bp.get("/api/v1/stats/gateways")
@operation("get", "Gateway quality series (ASR, ACD, PDD, NER, failures by code) per "
           "minute, hour or day, with each gateway's and each kind's sums",
           response=QualitySchema, parameters=_PARAMETERS)
def gateway_quality() -> Any:
    known_args(_ARGS)
    kind = request.args.get("kind")
    if kind is not None and kind not in KINDS:
        raise ApiError(422, "kind is mapping or routing", {"kind": ["mapping or routing"]})
    gw_id = request.args.get("id")
    wanted = int_arg("id", 0, 1, 2**62) if gw_id is not None else None
    if wanted is not None and kind is None:
        raise ApiError(422, "an id needs its kind", {"kind": ["required with id"]})
    step = int_arg("step", 60, 60, 86400 * 366)
    if step % 60:
        raise ApiError(422, "step is a multiple of 60", {"step": ["a multiple of 60"]})
    end = float_arg("to")
    end = time.time() if end is None else end
    begin = float_arg("from")
    begin = end - DEFAULT_SPAN if begin is None else begin
    start = int(begin // step * step)
    if end <= begin:
        raise ApiError(422, "from must be before to", {"from": ["before to"]})
    if (end - start) / step > MAX_POINTS:
        raise ApiError(422, f"at most {MAX_POINTS} points", {
            "step": [f"(to - from) / step is over {MAX_POINTS}; a larger step"]})
    source = max(s for s in STEPS if step % s == 0)
    db = context.database()
    stored = gateway_stats.cells(db, source, start, end, kind, wanted)
    names = gateway_stats.gateway_names(db)
    grouped: dict[tuple[str, int], list[tuple[int, Cell]]] = {}
    for (k, gid, _step, at), cell in stored:
        grouped.setdefault((k, gid), []).append((at, cell))
    series = [_series(k, gid, names.get((k, gid)), step, cells)
              for (k, gid), cells in sorted(grouped.items())]
    totals = [_series(k, None, None, step,
                      [pair for (kk, _gid), cells in grouped.items() if kk == k
                       for pair in cells])
              for k in KINDS if kind in (None, k)]
    return {"step": step, "source_step": source, "from": start, "to": end,
            "series": series, "totals": totals}
