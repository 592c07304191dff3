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
    """An error a person reads: `title` in Chinese (the default), `title_en` on request
    (Accept-Language: en); `code` is the stable part that clients act on."""

    status = 400
    code = "bad_request"
    title = "请求无法解析"
    title_en = "Bad request"
    # Sent with every answer of this error (and documented in the OpenAPI document).
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str | None = None, *, zh: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title_en)
        self.detail = detail or self.title  # what the service said, else the title
        self.detail_zh = zh  # the same in Chinese, where the service says it
        self._given = detail is not None
        self.extra = extra

    @classmethod
    def title_in(cls, english: bool) -> str:
        return cls.title_en if english else cls.title

    def texts(self, english: bool) -> tuple[str, str]:
        """(title, detail) in the reader's language; without a detail the title says it."""
        title = self.title_in(english)
        if not self._given:
            return title, title
        return title, self.detail if english or self.detail_zh is None else self.detail_zh

    def localized(self, english: bool) -> tuple[str, str, dict[str, Any]]:
        """(title, detail, extension members) as the reader's language has them."""
        title, detail = self.texts(english)
        return title, detail, self.extra


class BadRequest(AppError):
    """A body that cannot be parsed at all (malformed multipart): Starlette's own 400."""


class ValidationFailed(AppError):
    status = 422
    code = "validation_error"
    title = "请求内容不符合要求"
    title_en = "The request is not valid"


class Unauthenticated(AppError):
    status = 401
    code = "unauthenticated"
    title = "需要有效的登录令牌，请重新登录"
    title_en = "A valid bearer token is required"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}  # RFC 9110, 11.6.1


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    title = "您无权执行此操作"
    title_en = "You may not do this"


class SignatureInvalid(Forbidden):
    """A signed photo link (services/signing.py) that we did not sign as it stands."""

    code = "signature_invalid"
    title = "链接签名无效"
    title_en = "The link's signature is not valid"


class LinkExpired(Forbidden):
    code = "link_expired"
    title = "链接已过期"
    title_en = "The link has expired"


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = "未找到"
    title_en = "Not found"


class InvalidTransition(AppError):
    status = 409
    code = "invalid_transition"
    title = "问题当前状态下不能执行此操作"
    title_en = "This action is not allowed in the issue's current status"


class PhotoNotAllowed(AppError):
    status = 409
    code = "photo_not_allowed"
    title = "问题当前状态下不能添加此类照片"
    title_en = "Photos of this kind cannot be added in the issue's current status"


class AfterPhotoRequired(AppError):
    status = 409
    code = "after_photo_required"
    title = "提交整改前请至少上传一张整改后照片"
    title_en = "Upload at least one after-photo before submitting the rectification"


class OverrideNoteRequired(AppError):
    status = 422
    code = "override_note_required"
    title = "整改后照片有异常标记，验收通过需填写说明"
    title_en = "The after-photos are flagged: passing the check needs a note"

    def __init__(self, flags_zh: list[dict[str, str]], flags_en: list[dict[str, str]]) -> None:
        """The serious flags as `{code, text}` in each language (app/services/flag_text.py)."""
        super().__init__("; ".join(f["text"] for f in flags_en))
        self.flags_zh, self.flags_en = flags_zh, flags_en

    def localized(self, english: bool) -> tuple[str, str, dict[str, Any]]:
        flags = self.flags_en if english else self.flags_zh
        texts = (
            "; ".join(f["text"] for f in flags) if english else "；".join(f["text"] for f in flags)
        )
        detail = (
            f"The after-photos are flagged: {texts}. Say in a note why they pass."
            if english
            else f"整改后照片有异常：{texts}。请填写验收通过的理由。"
        )
        return self.title_in(english), detail, {"flags": flags}


class IdempotencyConflict(AppError):
    status = 409
    code = "idempotency_conflict"
    title = "此幂等键已用于另一个请求"
    title_en = "This Idempotency-Key was already used for a different request"


class VersionConflict(AppError):
    status = 412
    code = "version_conflict"
    title = "问题已被他人更新，请刷新后重试"
    title_en = "The issue has changed since you loaded it"


class PreconditionRequired(AppError):
    status = 428
    code = "precondition_required"
    title = "请求需携带问题版本号（If-Match）"
    title_en = "If-Match with the issue's version is required"


class PhotoTooLarge(AppError):
    status = 413
    code = "photo_too_large"
    title = "照片文件过大"
    title_en = "Photo too large"


class PayloadTooLarge(AppError):
    """A JSON (or any non-multipart) body over the limit, refused while it streams in."""

    status = 413
    code = "payload_too_large"
    title = "请求内容过大"
    title_en = "Request body too large"


class UriTooLong(AppError):
    """Answered by the server itself (app/serving.py), before the app sees the request."""

    status = 414
    code = "uri_too_long"
    title = "请求地址过长"
    title_en = "The request target is too long"


class HeadersTooLarge(AppError):
    """Answered by the server itself (app/serving.py), before the app sees the request."""

    status = 431
    code = "headers_too_large"
    title = "请求头过大"
    title_en = "The request headers are too large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    title = "仅支持 JPEG、PNG、WebP、HEIC/HEIF 和 AVIF 格式的照片"
    title_en = "Only JPEG, PNG, WebP, HEIC/HEIF and AVIF photos are accepted"


class ImageUnreadable(AppError):
    status = 422
    code = "image_unreadable"
    title = "照片已损坏或不完整，无法读取"
    title_en = "The photo is damaged or incomplete and cannot be read"


class ImageTooManyPixels(AppError):
    status = 422
    code = "image_too_many_pixels"
    title = "照片像素数超过上限"
    title_en = "The photo has more pixels than accepted"


class TooManyFiles(AppError):
    status = 422
    code = "too_many_files"
    title = "一次上传的照片过多"
    title_en = "Too many photos in one request"


class LocationRequired(AppError):
    status = 422
    code = "location_required"
    title = "缺少位置：请开启定位，或上传带 GPS 信息的照片"
    title_en = "No location: send lat/lon or a photo with GPS in its EXIF"


class UnknownAddress(AppError):
    status = 400
    code = "unknown_address"
    title = "找不到这个地址：请提供经纬度，或使用网格名称、已上报过的地址"
    title_en = "Address not found: send lat and long, or a grid cell's name or a known address"


class GridImportRefused(AppError):
    status = 422
    code = "grid_import_refused"
    title = "网格文件被拒绝，未写入任何数据"
    title_en = "The grid file was refused; nothing was written"


class OriginalCorrupted(AppError):
    """A stored original whose bytes no longer hash to its recorded SHA-256: never served."""

    status = 500
    code = "original_corrupted"
    title = "原始照片文件与其记录的 SHA-256 不符，已拒绝提供；请运行 gridproof verify"
    title_en = "The stored original no longer matches its SHA-256; run `gridproof verify`"


class PeriodNotEnded(AppError):
    status = 409
    code = "period_not_ended"
    title = "该周尚未结束，不能评定红旗或黑旗"
    title_en = "The week has not ended yet: its flags cannot be awarded"


class DatabaseUnavailable(AppError):
    """Not raised by services: the handler of a lost database connection answers with it."""

    status = 503
    code = "database_unavailable"
    title = "数据库连接中断，请稍后重试"
    title_en = "The database connection was lost"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class StorageUnavailable(AppError):
    """The object store is down or refuses (app/services/objects.py): nothing was created."""

    status = 503
    code = "storage_unavailable"
    title = "照片存储暂不可用，请稍后重试"
    title_en = "The photo storage is unavailable: try again later"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"
    title = "请求过于频繁，请稍后再试"
    title_en = "Too many requests: try again later"
    # Documented here; each answer says its own wait (retry_after_s).
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}

    def __init__(self, detail: str | None = None, *, retry_after_s: int, **extra: Any) -> None:
        super().__init__(detail, retry_after_s=retry_after_s, **extra)


# Starlette's own HTTP errors (unknown route, wrong method, body over the limit …).
_HTTP_CODES = {
    400: (BadRequest.code, BadRequest.title, BadRequest.title_en),
    404: ("not_found", "未找到", "Not found"),
    405: ("method_not_allowed", "不支持此请求方法", "Method not allowed"),
    413: (PhotoTooLarge.code, "请求内容过大", "Request body too large"),
    415: (UnsupportedMediaType.code, "不支持的内容类型", "Unsupported media type"),
}


def english(request: Request) -> bool:
    """The reader asked for English first (Accept-Language: en…); Chinese otherwise."""
    return english_in(request.headers)


def english_in(headers: Headers) -> bool:
    first = headers.get("accept-language", "").split(",")[0]
    return first.strip().lower().startswith("en")


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        problem_body(status, code, title, detail, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
    )


def problem_body(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return body | {"code": code, **extra}


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return app_error_response(exc, english(request))


def app_error_response(exc: AppError, english: bool) -> JSONResponse:
    """The problem+json answer of an error, with its headers (for middleware too)."""
    title, detail, extra = exc.localized(english)
    response = problem(exc.status, exc.code, title, detail, **extra)
    response.headers.update(exc.headers)
    if "retry_after_s" in exc.extra:  # when to try again, as the body says it too
        response.headers["Retry-After"] = str(exc.extra["retry_after_s"])
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    detail = "; ".join(
        f"{'.'.join(map(str, e['loc'][1:] or e['loc']))}: {e['msg']}" for e in errors
    )
    title = ValidationFailed.title_in(english(request))
    return problem(422, ValidationFailed.code, title, detail, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, zh, en = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP 错误", "HTTP error"))
    response = problem(exc.status_code, code, en if english(request) else zh, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value of the request (a NUL in a text, a number out of range):
    # the request is at fault, and nothing was written (the transaction is rolled back).
    detail = "a value of the request cannot be stored (out of range or with a NUL character)"
    return problem(422, ValidationFailed.code, ValidationFailed.title_in(english(request)), detail)


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


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    return internal_error_response(exc, english(request))


def internal_error_response(exc: Exception, english: bool) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc)
    return problem(
        500,
        "internal_error",
        "Internal server error" if english else "服务器内部错误",
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
