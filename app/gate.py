"""Authenticate before reading a body: the API's token lookup, done once, before routing.

`AuthenticateFirst` is a pure ASGI middleware in front of every /api/v1 request:

- A bearer token is looked up here, in one query (services/auth.py: the user, their unit, the
  last change number), before any byte of the body is read. The caller is kept in the scope:
  `deps.get_current_user` hands it to the route and `etags.ConditionalGetMiddleware` answers
  If-None-Match with it, so a request costs one token lookup, not two.
- A request that carries a body (any method but GET and HEAD, or a declared body), except on
  the public sign-in, needs a live token: 401 `unauthenticated` (with WWW-Authenticate) before
  anything is read. A GET without one goes on to its route, which answers 401 itself.
- A body that is not multipart (JSON) may be at most `max_json_kb`: a larger Content-Length is
  refused at once, a longer stream as soon as it passes the limit (413 `payload_too_large`).
  Multipart bodies (photos) are let through only after authentication, and only after the
  token's upload allowance (services/upload_throttle.py) took one more: 429 otherwise.

Errors here are rendered as every other error (errors.app_error_response), in the reader's
language. A body refused mid-stream is answered here; the route, which then sees the client
as gone, answers nothing more.
"""

from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import etags
from app.config import Settings
from app.db import get_engine, get_read_engine
from app.errors import (
    AppError,
    DatabaseUnavailable,
    PayloadTooLarge,
    Unauthenticated,
    app_error_response,
    english_in,
    internal_error_response,
)
from app.models.base import utcnow
from app.services import auth, changes, upload_throttle

API_PREFIX = "/api/v1/"
# The only /api/v1 route that takes a body without a token.
PUBLIC_PATHS = frozenset({"/api/v1/auth/login"})
_CALLER_KEY = "gridproof_caller"
NO_TOKEN = "Send Authorization: Bearer <token>; get one from /api/v1/auth/login"
BAD_TOKEN = "The token is unknown, expired or revoked; sign in again"


def bearer(headers: Headers) -> str | None:
    """The token of `Authorization: Bearer <token>`, if the request sends one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def caller_of(scope: Scope) -> auth.Caller | None:
    """The caller the gate identified for this request (None: no live token, or not looked up)."""
    caller: auth.Caller | None = scope.get("state", {}).get(_CALLER_KEY)
    return caller


def identify(settings: Settings, token: str) -> auth.Caller | None:
    """The token's caller, read on a reading connection (its use is noted apart, so that no
    request holds SQLite's write lock while its body streams in); None for a dead token."""
    url = settings.database_url
    with Session(get_read_engine(url), expire_on_commit=False) as session:
        try:
            return auth.user_for_token(session, token, settings, writer=get_engine(url))
        except Unauthenticated:
            return None


def take_upload(settings: Settings, caller: auth.Caller) -> None:
    with Session(get_engine(settings.database_url)) as session:
        upload_throttle.take(session, settings, caller.token_id, utcnow())


class AuthenticateFirst:
    """Pure ASGI middleware: see the module docstring. It wraps the whole middleware stack
    (app/main.py), so it renders its own errors, unexpected ones included."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            guard = await self._admit(scope, headers, send, receive)
        except AppError as refused:
            await app_error_response(refused, english_in(headers))(scope, receive, send)
            return
        except DBAPIError as exc:
            lost = DatabaseUnavailable(f"the token could not be checked: {type(exc).__name__}")
            await app_error_response(lost, english_in(headers))(scope, receive, send)
            return
        except Exception as exc:  # outside the app's error middleware: answered here
            await internal_error_response(exc, english_in(headers))(scope, receive, send)
            return
        if guard is None:
            await self.app(scope, receive, send)
        else:
            await self.app(scope, guard.receive, guard.send)

    async def _admit(
        self, scope: Scope, headers: Headers, send: Send, receive: Receive
    ) -> "_Guarded | None":
        """The guard that limits the body (None: no limit here), or the AppError that refuses
        the request."""
        public = scope["path"] in PUBLIC_PATHS
        token = None if public else bearer(headers)
        caller = await run_in_threadpool(identify, self.settings, token) if token else None
        if caller is not None:
            state = scope.setdefault("state", {})
            state[_CALLER_KEY] = caller
            user = caller.user
            assert user.id is not None
            revalidation = changes.Revalidation(user.id, user.role, user.org_unit_id, caller.change)
            etags.remember_scope(scope, revalidation)
        has_body = scope["method"] not in ("GET", "HEAD") or _declares_body(headers)
        if not has_body:
            return None
        if caller is None and not public:
            raise Unauthenticated(BAD_TOKEN if token else NO_TOKEN)
        multipart = headers.get("content-type", "").lower().startswith("multipart/form-data")
        if multipart and caller is not None:
            if scope["method"] == "POST":
                await run_in_threadpool(take_upload, self.settings, caller)
            return None  # the route's own limits (max_body_size, PhotoSpool) apply
        limit = self.settings.max_json_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(_too_large(limit))
        return _Guarded(scope, receive, send, limit, english_in(headers))


def _declares_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")


def _too_large(limit: int) -> str:
    return f"a body that is not multipart may be at most {limit // 1024} KB"


class _Guarded:
    """A receive that counts the body's bytes and, past the limit, answers 413 itself and tells
    the app that the client left; the app's own answer is then dropped."""

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, limit: int, english: bool
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.limit = limit
        self.english = english
        self.received = 0
        self.refused = False
        self.started = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received <= self.limit:
            return message
        self.refused = True
        if not self.started:
            answer = app_error_response(PayloadTooLarge(_too_large(self.limit)), self.english)
            await answer(self.scope, self._receive, self._send)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
