"""Console sessions: Flask's signed cookie, its key kept in the database, and CSRF.

The key is drawn by the first API process that needs it and stored in
``cluster_secrets`` (as the digest nonce key is), so both gunicorn workers and every
node sharing the database accept the same cookies, and it is never on a command line.

A session holds the operator's id and name, when they signed in, and the account's
``session_generation`` at that time; every request checks them against the database, so
a sign-out, a new password, a changed role or a removed account ends the session at
once, on every node, although the cookie itself lives in the browser.

CSRF: Flask-WTF's ``CSRFProtect`` with its automatic check turned off
(``WTF_CSRF_CHECK_DEFAULT``), called only for requests a session authenticates: a bearer
token is never sent by a browser on its own, so scripts need no CSRF token.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import timedelta

from flask import Flask, Request, current_app, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from itsdangerous import URLSafeTimedSerializer

from api import context
from b2bua.storage import cluster, operators
from b2bua.storage.operators import Operator

COOKIE = "softswitch_console"
SECRET_NAME = "console_session_key"  # its row in cluster_secrets
CSRF_HEADER = "X-CSRF-Token"
IDLE = timedelta(hours=1)  # a session unused this long ends (the cookie's max age)
ABSOLUTE_SECONDS = 12 * 3600  # and any session ends this long after its sign-in

csrf = CSRFProtect()
_KEY_LOCK = threading.Lock()


def init(app: Flask) -> None:
    app.session_interface = KeyFromDatabase()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=IDLE,
        SESSION_REFRESH_EACH_REQUEST=True,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in api/auth.py, for sessions only
        WTF_CSRF_HEADERS=[CSRF_HEADER],
        WTF_CSRF_TIME_LIMIT=None,  # as long as the session: the session has its limits
    )
    csrf.init_app(app)


def ensure_key(app: Flask) -> None:
    """The signing key, read (or drawn and stored) at its first use in this process."""
    if app.secret_key:
        return
    with _KEY_LOCK:
        if not app.secret_key:
            key = cluster.shared_secret(context.database(), SECRET_NAME, secrets.token_bytes(32))
            app.secret_key = key


class KeyFromDatabase(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the key loaded from the database when a
    request first carries a cookie or makes a session (an API call with a token never
    touches the database for it)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        ensure_key(app)
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        ensure_key(app)
        return super().get_signing_serializer(app)


def has_cookie(request: Request) -> bool:
    return bool(request.cookies.get(COOKIE))


def start(operator: Operator) -> None:
    """A new session for ``operator`` (anything in the old one is dropped, the CSRF
    token included)."""
    session.clear()
    session.permanent = True
    session.update(operator_id=operator.id, operator=operator.name,
                   generation=operator.session_generation, signed_in_at=time.time())


def current() -> Operator | None:
    """The signed-in operator, when the session is still good."""
    op_id, generation = session.get("operator_id"), session.get("generation")
    signed_in_at = session.get("signed_in_at")
    if not isinstance(op_id, int) or not isinstance(generation, int) or \
            not isinstance(signed_in_at, (int, float)):
        return None
    if time.time() - signed_in_at > ABSOLUTE_SECONDS:
        return None
    operator = operators.get_by_id(context.database(), op_id)
    if operator is None or operator.session_generation != generation or \
            operator.name != session.get("operator"):
        return None
    return operator


def csrf_token() -> str:
    """The session's CSRF token (made on first use), for the page to send back."""
    ensure_key(current_app)
    token: str = generate_csrf()
    return token


def check_csrf() -> str | None:
    """None when the request carries the session's CSRF token, else why not."""
    ensure_key(current_app)
    try:
        csrf.protect()
    except CSRFError as exc:
        return str(exc.description)
    return None
