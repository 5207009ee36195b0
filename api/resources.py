"""Generic CRUD over one config table, shared by every configurable resource.

A resource is a table, a marshmallow schema, the columns stored as JSON, and the
write-only columns (passwords) that are never returned. It gets: list with cursor
pagination and exact filters, get, create (POST), full update (PUT), partial update
(PATCH), delete, all audited.

Optimistic concurrency: every representation has a strong ``ETag`` derived from the
stored row (its id, ``updated_at`` and every readable column; write-only columns are
left out so the tag reveals nothing about a password). PUT, PATCH and DELETE honour
``If-Match`` (``*`` or one of the listed tags; anything else is 412). The check and the
write happen in one write transaction, taken for writing at once, so two operators cannot
both win.
A write without ``If-Match`` proceeds unconditionally.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.schemas import page_schema
from b2bua.storage import audit, crud
from b2bua.storage.backend import ConflictError, Database, Row

MAX_PAGE = 1000
F = TypeVar("F", bound=Callable[..., Any])
# Columns a list can be filtered on by exact value, when the resource has them.
TEXT_FILTERS = ("name", "username", "number")
BOOL_FILTERS = ("enabled",)


@dataclass
class Resource:
    name: str  # URL segment, e.g. "mapping-gateways"
    table: str
    schema: type[Schema]
    json_columns: frozenset[str] = frozenset()
    write_only: frozenset[str] = frozenset()
    bool_columns: frozenset[str] = frozenset({"enabled"})
    check: Callable[[dict[str, Any], dict[str, Any] | None], None] | None = None
    summary: str = ""
    # Run first with the id, in the delete's transaction, e.g. to remove children.
    on_delete: Callable[[Database, int], object] | None = None
    # Adds live state to a list page's items (the webhooks' delivery state, from the
    # engine); the stored row, and so the ETag, stays what single reads show.
    augment: Callable[[list[dict[str, Any]]], object] | None = None
    _page: type[Schema] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        crud.config_table(self.table)  # a table the storage does not edit fails at import

    def row_to_dict(self, row: Row) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key in self.write_only:
                continue
            if key in self.json_columns and value is not None:
                value = json.loads(value)
            elif key in self.bool_columns or key == "enabled":
                value = None if value is None else bool(value)
            out[key] = value
        return out

    def to_columns(self, data: dict[str, Any]) -> dict[str, Any]:
        return {
            k: json.dumps(v) if k in self.json_columns and v is not None else v
            for k, v in data.items()
        }

    def fetch(self, db: Database, item_id: int) -> Row:
        row = crud.get(db, self.table, item_id)
        if row is None:
            raise ApiError(404, f"no {self.name} with id {item_id}")
        return row

    def etag(self, row: Row) -> str:
        """The row's entity tag (unquoted): a hash of what a reader can see of it."""
        readable = [[k, v] for k, v in row.items() if k not in self.write_only]
        digest = hashlib.sha256(json.dumps(readable, default=str).encode()).hexdigest()
        return digest[:32]

    def filters(self) -> list[str]:
        """The list filters this resource has: the schema's exact-match columns."""
        fields = self.schema().fields
        return [f for f in (*TEXT_FILTERS, *BOOL_FILTERS) if f in fields]

    def list_filters(self) -> dict[str, Any]:
        """The columns the list's query string asks to equal a value; 422 for anything
        unknown."""
        allowed = self.filters()
        known_args({"limit", "after_id", *allowed})
        equal: dict[str, Any] = {}
        for column in allowed:
            raw = request.args.get(column)
            if raw is None:
                continue
            if column in BOOL_FILTERS:
                if raw not in ("true", "false"):
                    raise ApiError(422, f"{column} must be true or false",
                                   {column: ["must be true or false"]})
                equal[column] = raw == "true"
            else:
                equal[column] = raw
        return equal

    def check_if_match(self, row: Row) -> None:
        """412 unless ``If-Match`` is absent, ``*``, or lists the row's current tag."""
        if "If-Match" not in request.headers:
            return
        if not request.if_match.contains(self.etag(row)):
            raise ApiError(412, f"{self.name}/{row['id']} changed since you read it "
                           "(If-Match does not match its ETag); read it again",
                           headers={"ETag": f'"{self.etag(row)}"'})

    def respond(self, row: Row, status: int = 200) -> Response:
        """The row as JSON with its ETag."""
        resp = jsonify(self.row_to_dict(row))
        resp.status_code = status
        resp.set_etag(self.etag(row))
        return resp

    def blueprint(self) -> Blueprint:
        bp = Blueprint(self.table, __name__)
        base = f"/api/v1/{self.name}"
        schema = self.schema
        page = page_schema(schema)
        patch_schema = schema(partial=True)
        summary = self.summary or self.name
        filters = self.filters()

        @bp.get(base)
        @operation("get", f"List {summary} (cursor pagination by id; exact filters "
                   f"{', '.join(filters) or 'none'})", response=page,
                   parameters=list_params() + filter_params(filters))
        def list_items() -> Any:
            limit, after = page_args()
            equal = self.list_filters()
            rows = crud.list_after(context.database(), self.table, after, limit + 1, equal)
            items = [self.row_to_dict(r) for r in rows[:limit]]
            more = len(rows) > limit
            if self.augment is not None:
                self.augment(items)
            return {"items": items, "next_after_id": items[-1]["id"] if more else None}

        @bp.post(base)
        @operation("post", f"Create one of {summary}; returns its ETag", request=schema,
                   response=schema, status=201, errors=(409,))
        def create_item() -> Any:
            data = schema().load(json_body())
            self._check(data, None)
            now = time.time()
            data.update(created_at=now, updated_at=now)
            db = context.database()
            try:
                with db.transaction():
                    item_id = crud.insert(db, self.table, self.to_columns(data))
                    audit.record(db, context.actor(), "create", f"{self.name}/{item_id}",
                                 _redact(data, self.write_only))
                    row = self.fetch(db, item_id)
            except ConflictError as exc:
                raise ApiError(409, f"conflict: {exc}", {"name": ["already exists"]}) from None
            resp = self.respond(row, 201)
            resp.headers["Location"] = f"{base}/{item_id}"
            return resp

        @bp.get(f"{base}/<int:item_id>")
        @operation("get", f"One of {summary}, with its ETag (If-None-Match: 304)",
                   response=schema, errors=(404,))
        def get_item(item_id: int) -> Any:
            row = self.fetch(context.database(), item_id)
            if request.if_none_match.contains_weak(self.etag(row)):
                resp = Response(status=304)
                resp.set_etag(self.etag(row))
                return resp
            return self.respond(row)

        def update(item_id: int, partial: bool) -> Any:
            db = context.database()
            loader = patch_schema if partial else schema(partial=tuple(self.write_only))
            try:
                with db.transaction():
                    stored = self.fetch(db, item_id)
                    self.check_if_match(stored)
                    current = self.row_to_dict(stored)
                    data = loader.load(json_body())
                    self._check({**current, **data}, current)
                    data["updated_at"] = time.time()
                    crud.update(db, self.table, item_id, self.to_columns(data))
                    audit.record(db, context.actor(), "update", f"{self.name}/{item_id}",
                                 _redact(data, self.write_only))
                    row = self.fetch(db, item_id)
            except ConflictError as exc:
                raise ApiError(409, f"conflict: {exc}", {"name": ["already exists"]}) from None
            return self.respond(row)

        @bp.put(f"{base}/<int:item_id>")
        @operation("put", f"Replace one of {summary} (honours If-Match)", request=schema,
                   response=schema, errors=(404, 409, 412), parameters=[IF_MATCH])
        def put_item(item_id: int) -> Any:
            return update(item_id, partial=False)

        @bp.patch(f"{base}/<int:item_id>")
        @operation("patch", f"Change some fields of one of {summary} (honours If-Match)",
                   request=patch_schema, response=schema, errors=(404, 409, 412),
                   parameters=[IF_MATCH])
        def patch_item(item_id: int) -> Any:
            return update(item_id, partial=True)

        @bp.delete(f"{base}/<int:item_id>")
        @operation("delete", f"Delete one of {summary} (honours If-Match)", status=204,
                   errors=(404, 412), parameters=[IF_MATCH])
        def delete_item(item_id: int) -> Any:
            db = context.database()
            with db.transaction():
                self.check_if_match(self.fetch(db, item_id))
                if self.on_delete is not None:
                    self.on_delete(db, item_id)
                crud.delete(db, self.table, item_id)
                audit.record(db, context.actor(), "delete", f"{self.name}/{item_id}")
            return "", 204

        return bp

    def _check(self, data: dict[str, Any], current: dict[str, Any] | None) -> None:
        if self.check is not None:
            try:
                self.check(data, current)
            except ValidationError as exc:
                raise ApiError(422, "the request has invalid fields",
                               _messages(exc)) from None


def _redact(data: dict[str, Any], secret: frozenset[str]) -> dict[str, Any]:
    return {k: ("***" if k in secret else v) for k, v in data.items()}


def json_body() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object", {"_schema": ["not a JSON object"]})
    return body


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be an integer", {name: ["not an integer"]}) from None
    if not low <= value <= high:
        raise ApiError(422, f"{name} out of range", {name: [f"must be {low}-{high}"]})
    return value


def float_arg(name: str) -> float | None:
    """A finite number from the query string (``nan`` would bind NULL and match nothing)."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ApiError(422, f"{name} must be a number", {name: ["not a finite number"]})
    return value


def known_args(allowed: set[str] | list[str]) -> None:
    """422 for a query parameter the endpoint does not know (a typo must not widen it)."""
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed))
        raise ApiError(422, "unknown query parameter",
                       {u: [f"not a parameter here; known: {known}"] for u in unknown})


def page_args() -> tuple[int, int]:
    return int_arg("limit", 100, 1, MAX_PAGE), int_arg("after_id", 0, 0, 2**62)


def list_params() -> list[dict[str, Any]]:
    return [
        {"in": "query", "name": "limit", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
        {"in": "query", "name": "after_id", "required": False,
         "schema": {"type": "integer", "minimum": 0}},
    ]


def filter_params(filters: list[str]) -> list[dict[str, Any]]:
    return [
        {"in": "query", "name": f, "required": False,
         "schema": {"type": "boolean"} if f in BOOL_FILTERS else {"type": "string"},
         "description": "true or false" if f in BOOL_FILTERS else "exact match"}
        for f in filters
    ]


IF_MATCH: dict[str, Any] = {
    "in": "header", "name": "If-Match", "required": False, "schema": {"type": "string"},
    "description": "the ETag read before (or *); a mismatch is 412 and nothing changes. "
                   "Without it the write is unconditional.",
}


def raw_body(content_type: str, description: str) -> Callable[[F], F]:
    """Declare a non-JSON 200 body (CSV, Prometheus text) on a view's ``@operation``."""

    def wrap(fn: F) -> F:
        ops: dict[str, Any] = getattr(fn, "_openapi", {})
        for op in ops.values():
            op["responses"]["200"] = {
                "description": description,
                "content": {content_type: {"schema": {"type": "string"}}},
            }
        return fn

    return wrap


def _messages(exc: ValidationError) -> dict[str, Any]:
    messages = exc.messages
    return messages if isinstance(messages, dict) else {"_schema": messages}
