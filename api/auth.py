"""Authentication: a Bearer token (scripts), or a console session (the web console's
pages calling this same API; docs/console.md). ``read`` tokens and operators may only
read; a session's writes must carry its CSRF token."""

from __future__ import annotations

from flask import Flask, g, request

from api import context
from api.console import BLUEPRINT as CONSOLE
from api.console import sessions
from api.errors import ApiError
from b2bua.storage import tokens
from b2bua.storage.operators import Operator

PUBLIC_ENDPOINTS = {"health.health", "static"}
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
# POSTs that change nothing (the routing dry run): a read token may make them too.
READ_ONLY_POSTS = {"routing.routing_test"}


def register(app: Flask) -> None:
    @app.before_request
    def _authenticate() -> None:
        if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            return
        if request.blueprint == CONSOLE:  # its pages check the session themselves
            return
        header = request.headers.get("Authorization", "")
        if not header and sessions.has_cookie(request):
            g.operator = _session_operator()
            return
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="softswitch"'}
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "a Bearer token is required", headers=challenge)
        info = tokens.verify_token(context.database(), token.strip())
        if info is None:
            raise ApiError(401, "the token is not valid", headers=challenge)
        if info.role != "admin" and request.method not in READ_METHODS \
                and request.endpoint not in READ_ONLY_POSTS:
            raise ApiError(403, "this token may only read")
        g.token = info


def _session_operator() -> Operator:
    """The console session's operator, allowed to make this request."""
    operator = sessions.current()
    if operator is None:
        raise ApiError(401, "the console session has ended: sign in again",
                       headers={"WWW-Authenticate": 'Bearer realm="softswitch"'})
    if request.method not in READ_METHODS:
        if operator.role != "admin" and request.endpoint not in READ_ONLY_POSTS:
            raise ApiError(403, "this operator may only read")
        problem = sessions.check_csrf()
        if problem is not None:
            raise ApiError(403, f"CSRF check failed: {problem} (send the session's token "
                           f"in {sessions.CSRF_HEADER})")
    return operator
