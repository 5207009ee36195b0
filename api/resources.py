"""Generic CRUD over one SQLite config table, shared by every configurable resource.

A resource is a table, a marshmallow schema, the columns stored as JSON, and the
write-only columns (passwords) that are never returned. It gets: list with cursor
pagination, get, create (POST), full update (PUT), partial update (PATCH), delete,
all audited.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, ValidationError

from api import context
from api.errors import ApiError
from api.openapi import operation
from api.schemas import page_schema
from b2bua.storage import audit
from b2bua.storage.db import transaction

MAX_PAGE = 1000


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
    on_delete: str | None = None  # SQL run first with the id, e.g. to remove children
    _page: type[Schema] | None = field(default=None, init=False)

    def row_to_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in row.keys():  # noqa: SIM118 - sqlite3.Row is not a mapping
            if key in self.write_only:
                continue
            value = row[key]
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

    def fetch(self, conn: sqlite3.Connection, item_id: int) -> sqlite3.Row:
        row = conn.execute(f"SELECT * FROM {self.table} WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise ApiError(404, f"no {self.name} with id {item_id}")
        return row  # type: ignore[no-any-return]

    def blueprint(self) -> Blueprint:
        bp = Blueprint(self.table, __name__)
        base = f"/api/v1/{self.name}"
        schema = self.schema
        page = page_schema(schema)
        patch_schema = schema(partial=True)
        summary = self.summary or self.name

        @bp.get(base)
        @operation("get", f"List {summary} (cursor pagination by id)", response=page,
                   parameters=list_params())
        def list_items() -> Any:
            limit, after = page_args()
            rows = context.conn().execute(
                f"SELECT * FROM {self.table} WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit + 1),
            ).fetchall()
            items = [self.row_to_dict(r) for r in rows[:limit]]
            more = len(rows) > limit
            return {"items": items, "next_after_id": items[-1]["id"] if more else None}

        @bp.post(base)
        @operation("post", f"Create one of {summary}", request=schema, response=schema,
                   status=201, errors=(409,))
        def create_item() -> Any:
            data = schema().load(json_body())
            self._check(data, None)
            now = time.time()
            data.update(created_at=now, updated_at=now)
            conn = context.conn()
            try:
                with transaction(conn):
                    cur = conn.execute(
                        f"INSERT INTO {self.table} ({', '.join(data)}) "
                        f"VALUES ({', '.join('?' for _ in data)})",
                        tuple(self.to_columns(data).values()),
                    )
                    item_id = int(cur.lastrowid or 0)
                    audit.record(conn, context.actor(), "create", f"{self.name}/{item_id}",
                                 _redact(data, self.write_only))
            except sqlite3.IntegrityError as exc:
                raise ApiError(409, f"conflict: {exc}", {"name": ["already exists"]}) from None
            return self.row_to_dict(self.fetch(conn, item_id)), 201

        @bp.get(f"{base}/<int:item_id>")
        @operation("get", f"One of {summary}", response=schema, errors=(404,))
        def get_item(item_id: int) -> Any:
            return self.row_to_dict(self.fetch(context.conn(), item_id))

        def update(item_id: int, partial: bool) -> Any:
            conn = context.conn()
            current = self.row_to_dict(self.fetch(conn, item_id))
            loader = patch_schema if partial else schema(partial=tuple(self.write_only))
            data = loader.load(json_body())
            merged = {**current, **data}
            self._check(merged, current)
            data["updated_at"] = time.time()
            columns = self.to_columns(data)
            try:
                with transaction(conn):
                    conn.execute(
                        f"UPDATE {self.table} SET {', '.join(f'{k} = ?' for k in columns)} "
                        "WHERE id = ?",
                        (*columns.values(), item_id),
                    )
                    audit.record(conn, context.actor(), "update", f"{self.name}/{item_id}",
                                 _redact(data, self.write_only))
            except sqlite3.IntegrityError as exc:
                raise ApiError(409, f"conflict: {exc}", {"name": ["already exists"]}) from None
            return self.row_to_dict(self.fetch(conn, item_id))

        @bp.put(f"{base}/<int:item_id>")
        @operation("put", f"Replace one of {summary}", request=schema, response=schema,
                   errors=(404, 409))
        def put_item(item_id: int) -> Any:
            return update(item_id, partial=False)

        @bp.patch(f"{base}/<int:item_id>")
        @operation("patch", f"Change some fields of one of {summary}", request=patch_schema,
                   response=schema, errors=(404, 409))
        def patch_item(item_id: int) -> Any:
            return update(item_id, partial=True)

        @bp.delete(f"{base}/<int:item_id>")
        @operation("delete", f"Delete one of {summary}", status=204, errors=(404,))
        def delete_item(item_id: int) -> Any:
            conn = context.conn()
            self.fetch(conn, item_id)
            with transaction(conn):
                if self.on_delete:
                    conn.execute(self.on_delete, (item_id,))
                conn.execute(f"DELETE FROM {self.table} WHERE id = ?", (item_id,))
                audit.record(conn, context.actor(), "delete", f"{self.name}/{item_id}")
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


def page_args() -> tuple[int, int]:
    return int_arg("limit", 100, 1, MAX_PAGE), int_arg("after_id", 0, 0, 2**62)


def list_params() -> list[dict[str, Any]]:
    return [
        {"in": "query", "name": "limit", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
        {"in": "query", "name": "after_id", "required": False,
         "schema": {"type": "integer", "minimum": 0}},
    ]



def _messages(exc: ValidationError) -> dict[str, Any]:
    messages = exc.messages
    return messages if isinstance(messages, dict) else {"_schema": messages}
