"""Errors as RFC 9457 problem JSON (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, json
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from b2bua.storage.backend import BusyError, ConflictError, UnavailableError

PROBLEM_TYPE = "application/problem+json"


class ApiError(Exception):
    """An error with an HTTP status, raised anywhere in a view."""

    def __init__(
        self, status: int, detail: str, errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 412: "Precondition Failed",
    415: "Unsupported Media Type", 422: "Unprocessable Entity", 428: "Precondition Required",
    500: "Internal Server Error", 503: "Service Unavailable",
}


def problem(
    status: int, detail: str, errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return problem(exc.status, exc.detail, exc.errors, exc.headers)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Response:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        return problem(422, "the request has invalid fields", messages)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        resp = problem(status, exc.description or _TITLES.get(status, "error"))
        if status == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    # What the database refused, when the view did not answer it itself: a constraint
    # (a row that went meanwhile, a name taken) is the request's conflict; a database
    # that is busy or out of reach is temporary, so the client may retry.
    @app.errorhandler(ConflictError)
    def _conflict(exc: ConflictError) -> Response:
        return problem(409, f"conflict: {exc}")

    @app.errorhandler(BusyError)
    def _busy(exc: BusyError) -> Response:
        app.logger.warning("database busy: %s", exc)
        return problem(503, "the database is busy; retry", headers={"Retry-After": "1"})

    @app.errorhandler(UnavailableError)
    def _unavailable(exc: UnavailableError) -> Response:
        app.logger.error("database unavailable: %s", exc)
        return problem(503, "the database cannot be reached; retry",
                       headers={"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return problem(500, "internal error")
