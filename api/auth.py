"""Bearer-token authentication; ``read`` tokens may only read."""

from __future__ import annotations

from flask import Flask, g, request

from api import context
from api.errors import ApiError
from b2bua.storage import tokens

PUBLIC_ENDPOINTS = {"health.health", "static"}
READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def register(app: Flask) -> None:
    @app.before_request
    def _authenticate() -> None:
        if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="softswitch"'}
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "a Bearer token is required", headers=challenge)
        info = tokens.verify_token(context.database(), token.strip())
        if info is None:
            raise ApiError(401, "the token is not valid", headers=challenge)
        if info.role != "admin" and request.method not in READ_METHODS:
            raise ApiError(403, "this token may only read")
        g.token = info
