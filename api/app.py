"""The Flask app factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from api import auth, console, context, errors
from api.converters import RowIdConverter
from api.openapi import build_spec, operation
from api.routes import (
    audit,
    calls,
    cdrs,
    cluster,
    engine,
    gateways,
    health,
    ladders,
    metrics,
    numbers,
    operators,
    parameters,
    phones,
    quality,
    routing,
    security,
    upstream,
    webhooks,
)
from api.schemas import ProblemSchema
from b2bua.options import control_path_for
from b2bua.storage import is_postgres, sqlite_path
from b2bua.storage.db import DEFAULT_DB_PATH


def create_app(db_path: str | Path | None = None, control_path: str | Path | None = None) -> Flask:
    app = Flask(__name__)
    app.url_map.converters["int"] = RowIdConverter
    target = str(db_path or os.environ.get("SOFTSWITCH_DB") or DEFAULT_DB_PATH)
    # Kept as written: a path, or a URL (which a Path would break by folding its "//").
    app.config["SOFTSWITCH_DB"] = target
    # The engine's socket sits beside a SQLite file; with a server, in the default place.
    beside = DEFAULT_DB_PATH if is_postgres(target) else sqlite_path(target)
    app.config["SOFTSWITCH_CONTROL"] = str(
        control_path or os.environ.get("SOFTSWITCH_CONTROL") or control_path_for(beside)
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    context.init(app)
    errors.register(app)
    auth.register(app)
    console.init(app)  # the web console under /console (docs/console.md)
    blueprints = (
        health.bp, parameters.bp, engine.bp, calls.bp, cdrs.bp, security.bp,
        gateways.mapping_gateways.blueprint(), gateways.routing_gateways.blueprint(),
        phones.phones.blueprint(), phones.bp, numbers.transforms.blueprint(),
        numbers.groups.blueprint(), numbers.bp, upstream.bp,
        audit.bp, metrics.bp, cluster.bp, quality.bp, routing.bp,
        operators.bp, ladders.bp, webhooks.webhooks.blueprint(),
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)

    spec_cache: dict[str, Any] = {}

    @app.get("/api/v1/openapi.json")
    @operation("get", "This OpenAPI document")
    def openapi() -> Any:
        if "spec" not in spec_cache:
            spec_cache["spec"] = build_spec(app, ProblemSchema)
        return spec_cache["spec"]

    return app
