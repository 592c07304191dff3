"""One error hierarchy, rendered by one handler as application/problem+json (RFC 9457)."""

import json
import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger("gridproof")


class AppError(Exception):
    status = 400
    code = "bad_request"
    title = "Bad request"
    # Sent with every answer of this error (and documented in the OpenAPI document).
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class BadRequest(AppError):
    """A body that cannot be parsed at all (malformed multipart): Starlette's own 400."""


class ValidationFailed(AppError):
    status = 422
    code = "validation_error"
    title = "The request is not valid"


class Unauthenticated(AppError):
    status = 401
    code = "unauthenticated"
    title = "A valid bearer token is required"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}  # RFC 9110, 11.6.1


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    title = "You may not do this"


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = "Not found"


class InvalidTransition(AppError):
    status = 409
    code = "invalid_transition"
    title = "This action is not allowed in the issue's current status"


class PhotoNotAllowed(AppError):
    status = 409
    code = "photo_not_allowed"
    title = "Photos of this kind cannot be added in the issue's current status"


class AfterPhotoRequired(AppError):
    status = 409
    code = "after_photo_required"
    title = "Upload at least one after-photo before submitting the rectification"


class OverrideNoteRequired(AppError):
    status = 422
    code = "override_note_required"
    title = "The after-photos are flagged: passing the check needs a note"


class IdempotencyConflict(AppError):
    status = 409
    code = "idempotency_conflict"
    title = "This Idempotency-Key was already used for a different request"


class VersionConflict(AppError):
    status = 412
    code = "version_conflict"
    title = "The issue has changed since you loaded it"


class PreconditionRequired(AppError):
    status = 428
    code = "precondition_required"
    title = "If-Match with the issue's version is required"


class PhotoTooLarge(AppError):
    status = 413
    code = "photo_too_large"
    title = "Photo too large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    title = "Only JPEG, PNG, WebP, HEIC/HEIF and AVIF photos are accepted"


class ImageUnreadable(AppError):
    status = 422
    code = "image_unreadable"
    title = "The photo is damaged or incomplete and cannot be read"


class ImageTooManyPixels(AppError):
    status = 422
    code = "image_too_many_pixels"
    title = "The photo has more pixels than accepted"


class TooManyFiles(AppError):
    status = 422
    code = "too_many_files"
    title = "Too many photos in one request"


class LocationRequired(AppError):
    status = 422
    code = "location_required"
    title = "No location: send lat/lon or a photo with GPS in its EXIF"


class GridImportRefused(AppError):
    status = 422
    code = "grid_import_refused"
    title = "网格文件被拒绝，未写入任何数据"


class DatabaseUnavailable(AppError):
    """Not raised by services: the handler of a lost database connection answers with it."""

    status = 503
    code = "database_unavailable"
    title = "The database connection was lost"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"
    title = "请求过于频繁，请稍后再试"
    # Documented here; each answer says its own wait (retry_after_s).
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}

    def __init__(self, detail: str | None = None, *, retry_after_s: int, **extra: Any) -> None:
        super().__init__(detail, retry_after_s=retry_after_s, **extra)


# Starlette's own HTTP errors (unknown route, wrong method, body over the limit …).
_HTTP_CODES = {
    400: (BadRequest.code, BadRequest.title),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: (PhotoTooLarge.code, "Request body too large"),
    415: (UnsupportedMediaType.code, "Unsupported media type"),
}


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body |= {"code": code, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    response = problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)
    response.headers.update(exc.headers)
    if "retry_after_s" in exc.extra:  # when to try again, as the body says it too
        response.headers["Retry-After"] = str(exc.extra["retry_after_s"])
    return response


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    detail = "; ".join(
        f"{'.'.join(map(str, e['loc'][1:] or e['loc']))}: {e['msg']}" for e in errors
    )
    return problem(422, ValidationFailed.code, ValidationFailed.title, detail, errors=errors)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    response = problem(exc.status_code, code, title, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value of the request (a NUL in a text, a number out of range):
    # the request is at fault, and nothing was written (the transaction is rolled back).
    detail = "a value of the request cannot be stored (out of range or with a NUL character)"
    return problem(422, ValidationFailed.code, ValidationFailed.title, detail)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if not exc.connection_invalidated:
        return await _internal_error(request, exc)
    # A pooled connection had died (the database restarted): the pool has been emptied and the
    # next request connects afresh, so this one may simply be retried.
    logger.warning("database connection lost: %s", exc.orig)
    lost = DatabaseUnavailable(
        "The database restarted or dropped the connection; retry the request."
    )
    return await _app_error(request, lost)


async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc)
    return problem(
        500,
        "internal_error",
        "Internal server error",
        "Something went wrong on our side; the request may be retried. The error has been logged.",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _internal_error)


class BodyLimitAsProblem:
    """Starlette's body limit answers 413 in plain text (sometimes replacing our answer):
    say it as problem+json, like every other error. Wraps the whole middleware stack."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rewritten = False

        async def send_as_problem(message: Message) -> None:
            nonlocal rewritten
            if rewritten:
                return  # the plain-text body that came with the replaced start
            if _is_plain_413(message):
                rewritten = True
                await _send_problem_413(send)
                return
            await send(message)

        await self.app(scope, receive, send_as_problem)


def _is_plain_413(message: Message) -> bool:
    if message["type"] != "http.response.start" or message["status"] != 413:
        return False
    return Headers(raw=message["headers"]).get("content-type", "").startswith("text/")


async def _send_problem_413(send: Send) -> None:
    body = {
        "type": "about:blank",
        "title": "Request body too large",
        "status": 413,
        "detail": "The request is larger than the server accepts; send fewer or smaller photos",
        "code": PhotoTooLarge.code,
    }
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
