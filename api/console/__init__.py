"""The operator's web console under ``/console`` (docs/console.md).

A sign-in page, then one page of plain JavaScript modules (``static/js/``, no build
step) that calls the same REST API as scripts do, authenticated by the session cookie
and a CSRF header instead of a token. Every response here carries a
Content-Security-Policy that allows nothing from another origin, no inline script or
style, no framing; front-end libraries are served from the project's ``node_modules``
(installed by ``scripts/setup`` with ``npm ci``), never from an outside host.
"""

from __future__ import annotations

from pathlib import Path

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    redirect,
    render_template,
    request,
    send_file,
    session,
)
from werkzeug.wrappers import Response as BaseResponse

from api import context
from api.console import accounts, sessions

BLUEPRINT = "console"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
# What /console/vendor/ serves: a name the pages use -> its file under node_modules.
VENDOR = {
    "uplot/uPlot.esm.js": "uplot/dist/uPlot.esm.js",
    "uplot/uPlot.min.css": "uplot/dist/uPlot.min.css",
}

bp = Blueprint(BLUEPRINT, __name__, url_prefix="/console", static_folder="static",
               static_url_path="/static", template_folder="templates")


def init(app: Flask) -> None:
    sessions.init(app)
    app.register_blueprint(bp)


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if resp.mimetype == "text/html":  # pages carry the CSRF token: never cached
        resp.headers["Cache-Control"] = "no-store"
    return resp


def _source() -> str | None:
    return request.remote_addr


@bp.get("/")
def app_page() -> BaseResponse | str:
    operator = sessions.current()
    if operator is None:
        return redirect("/console/login")
    return render_template("app.html", operator=operator,
                           csrf=sessions.csrf_token())


@bp.get("/login")
def login_page() -> BaseResponse | str:
    if sessions.has_cookie(request) and sessions.current() is not None:
        return redirect("/console/")
    return render_template("login.html", message=None, name="",
                           csrf=sessions.csrf_token())


@bp.post("/login")
def login() -> BaseResponse | tuple[str, int]:
    name = request.form.get("name", "")[:64]
    problem = sessions.check_csrf()
    if problem is not None:
        return render_template("login.html", message="The sign-in form had expired; "
                               "try again.", name=name,
                               csrf=sessions.csrf_token()), 400
    password = request.form.get("password", "")[:accounts.PASSWORD_MAX]
    operator = accounts.sign_in(context.database(), name, password, _source())
    if operator is None:
        return render_template("login.html", message=accounts.REFUSED, name=name,
                               csrf=sessions.csrf_token()), 401
    sessions.start(operator)
    return redirect("/console/", code=303)


@bp.post("/logout")
def logout() -> BaseResponse:
    if sessions.check_csrf() is not None:
        abort(403)
    operator = sessions.current()
    if operator is not None:
        accounts.sign_out(context.database(), operator, _source())
    session.clear()
    return redirect("/console/login", code=303)


@bp.get("/vendor/<path:name>")
def vendor(name: str) -> Response:
    """A front-end library's file from ``node_modules`` (only those listed)."""
    relative = VENDOR.get(name)
    if relative is None or not (NODE_MODULES / relative).is_file():
        abort(404)
    return send_file(NODE_MODULES / relative, max_age=3600)
