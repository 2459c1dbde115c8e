"""Errors of the web interface and the API, each carrying its HTTP status and a stable code.

Handlers raise; one handler (``install_error_handlers``) turns every error into the JSON body
``{"error": {"code", "message", "details"}}`` for the API, or an error page for the HTML views.
Errors of the layers below keep their meaning: a bad frame is 422, refused settings and meter
lists are 400 with the field or row of every problem in ``details``.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Quart, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from mbusgw.core.errors import DecodeError, DecryptError, EncodeError, FrameError
from mbusgw.gateway.facade import KeyFileError, LicenceError
from mbusgw.gateway.meters import MeterListError, RowError
from mbusgw.gateway.settings import ConfigError

log = logging.getLogger("mbusgw.web")


class ApiError(Exception):
    """The base of every error a request can end with; ``status`` and ``code`` are class data."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class InvalidSettings(BadRequest):
    code = "invalid_settings"


class InvalidMeterList(BadRequest):
    code = "invalid_meter_list"


class InvalidKeyFile(BadRequest):
    code = "invalid_key_file"


class InvalidLicence(BadRequest):
    code = "invalid_licence"


class InvalidPassword(BadRequest):
    code = "invalid_password"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class CsrfRefused(Forbidden):
    code = "csrf_token_missing"


class PasswordChangeRequired(Forbidden):
    code = "password_change_required"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UndecodableFrame(ApiError):
    status = 422
    code = "undecodable_frame"


class TooManyAttempts(ApiError):
    status = 429
    code = "too_many_attempts"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"retry_after_s": retry_after})
        self.retry_after = retry_after


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


def _row_details(errors: list[RowError]) -> list[dict[str, Any]]:
    return [{"line": e.line, "column": e.column, "message": e.message} for e in errors]


def as_api_error(exc: BaseException) -> ApiError | None:
    """The API error for an exception of the layers below, or None if it is not one we know
    (then it is a bug: logged, answered with 500 and nothing about its insides)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ConfigError):
        return InvalidSettings("the settings were refused; nothing was changed", exc.errors)
    if isinstance(exc, MeterListError):
        return InvalidMeterList(
            "the meter list has errors; nothing was installed", _row_details(exc.errors)
        )
    if isinstance(exc, KeyFileError):
        return InvalidKeyFile(
            "the key file or entry was refused; nothing was changed", _row_details(exc.errors)
        )
    if isinstance(exc, LicenceError):
        return InvalidLicence(str(exc))
    if isinstance(exc, EncodeError):
        return BadRequest(str(exc))
    if isinstance(exc, FrameError | DecodeError | DecryptError):
        return UndecodableFrame(str(exc), {"offset": exc.offset, "kind": type(exc).__name__})
    return None


_HTTP_CODES = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


def wants_json() -> bool:
    """API paths and clients asking for JSON get JSON errors; browsers get a page."""
    if request.path.startswith("/api/"):
        return True
    accept = request.accept_mimetypes
    return accept.best == "application/json"


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(Exception)
    async def handle(exc: Exception) -> Response | tuple[Any, int]:
        error = as_api_error(exc)
        if error is None and isinstance(exc, HTTPException):
            kind = _HTTP_CODES.get(exc.code or 500, ApiError)
            error = kind(exc.description or exc.name)
            error.status = exc.code or 500
        if error is None:
            log.exception("request %s %s failed", request.method, request.path)
            error = ApiError("internal error; the system log has the details")
        headers = {}
        if isinstance(error, TooManyAttempts):
            headers["Retry-After"] = str(error.retry_after)
        if wants_json():
            response = jsonify(error.body())
            response.status_code = error.status
            response.headers.update(headers)
            return response
        page = await render_template("error.html", error=error)
        return page, error.status, headers
