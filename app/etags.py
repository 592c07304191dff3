"""Conditional GETs for the whole API: an ETag on every answer, 304 when nothing changed.

The ETag of a GET under /api/v1 is a hash of the last change number (services/changes.py), who
asks (user, role and unit: their scope), the full URL with its query, the language asked for
(Accept-Language: texts for people follow it, so answers say `Vary: Accept-Language`) and the
clock (`clock_key`): rounded to `etag_clock_seconds` (some answers depend on the time, not only
on writes), and the window of the signed photo links (services/signing.py: answers of a new
window carry new links, so that a 304 never confirms links that have expired).

The caller and the change number come from the one token lookup of the request, made by
`gate.AuthenticateFirst` before routing (`remember_scope`): a request with If-None-Match whose
tag still holds is answered 304 here, and the route never runs, so that a dashboard polling
every few seconds costs one indexed query while nothing changes. Without it, the route's
answer is labelled with the same number.

Either way the number (and the clock) is read before the route reads any data, so an answer is
never labelled newer than it is: a write that lands meanwhile changes the number, and the next
poll gets the new answer. An answer whose route never identified its caller gets no ETag.

Routes that set their own ETag keep it, made here too, each answering If-None-Match itself
(`not_modified`): GET /api/v1/issues/{id} ("<version>", which If-Match takes back), the photo
files (immutable, from their hash), the comparison image (from the photos it shows), the
evidence JSON (the hash of its bytes: the same tag is always the same bytes) and the pages'
static files (the hash of their bytes, or of their size and time).
"""

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.errors import english_in
from app.services import changes, signing

API_PREFIX = "/api/v1/"
# Bump when the shape of answers changes, so that ETags from an older release never match.
ETAG_FORMAT = "1"
_STATE_KEY = "gridproof_revalidation"


def remember_scope(scope: Scope, state: changes.Revalidation) -> None:
    """Hand the caller and the change number read by the token lookup to the middleware."""
    scope.setdefault("state", {})[_STATE_KEY] = state


def etag_for(
    state: changes.Revalidation, target: str, clock: int | str, english: bool = False
) -> str:
    who = (state.change, state.user_id, state.role, state.org_unit_id)
    key = "|".join(map(str, (ETAG_FORMAT, *who, clock, "en" if english else "zh")))
    return f'"c{hashlib.sha256(f"{key}|{target}".encode()).hexdigest()[:32]}"'


def issue_etag(version: int) -> str:
    """One issue: its version, as the contract says ("<version>"); If-Match sends it back."""
    return f'"{version}"'


def photo_etag(sha256: str, variant: str | None = None) -> str:
    """A stored photo file (the original, or its `thumb` or `large`): immutable, from its hash."""
    return f'"{sha256}-{variant}"' if variant else f'"{sha256}"'


def content_etag(body: bytes) -> str:
    """An answer built in full before it is sent: the hash of its bytes."""
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def derived_etag(*parts: object) -> str:
    """An answer made from the named inputs only (the same inputs make the same bytes)."""
    key = "|".join(map(str, parts))
    return f'"d{hashlib.sha256(key.encode()).hexdigest()[:32]}"'


def file_etag(path: Path) -> str:
    """A file on disk that may change: its size and modification time (as StaticFiles does)."""
    stat = path.stat()
    return derived_etag("file", stat.st_mtime_ns, stat.st_size)


def not_modified(request: Request, etag: str, headers: Mapping[str, str]) -> Response | None:
    """A 304 (with these headers and the ETag) when If-None-Match names the ETag, else None."""
    if matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={**headers, "ETag": etag})
    return None


def send_file(path: Path, etag: str, media_type: str, headers: Mapping[str, str]) -> Response:
    """The file labelled with this ETag, not with Starlette's own (which it never compares)."""
    return FileResponse(path, media_type=media_type, headers={**headers, "ETag": etag})


def matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison over the list of tags, `*` included, as RFC 9110 asks for If-None-Match."""
    tags = _tags(if_none_match)
    return "*" in tags or etag.removeprefix("W/") in tags


def _tags(if_none_match: str | None) -> set[str]:
    if not if_none_match:
        return set()
    return {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}


def clock_bucket(settings: Settings, at: float | None = None) -> int:
    seconds = settings.etag_clock_seconds
    return int((time.time() if at is None else at) // seconds) if seconds else 0


def clock_key(settings: Settings) -> str:
    """What of the clock answers depend on: the etag_clock_seconds interval and the window of
    the signed photo links in them, read at one moment."""
    now = time.time()
    return f"{clock_bucket(settings, now)}.{signing.window_of(settings.media_url_ttl_seconds, now)}"


def _cache_headers(etag: str) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Authorization, Accept-Language"}


def _not_modified_start(etag: str) -> Message:
    headers = Response(status_code=304, headers=_cache_headers(etag)).raw_headers
    return {"type": "http.response.start", "status": 304, "headers": headers}


class ConditionalGetMiddleware:
    """Pure ASGI middleware: answers If-None-Match before routing, labels 200 answers after."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not scope["path"].startswith(API_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        if_none_match = request_headers.get("if-none-match")
        # Texts for people follow Accept-Language: an answer in one language is not the other's.
        english = english_in(request_headers)
        target = scope["path"] + "?" + scope["query_string"].decode("latin-1")
        # The clock too is read before the route runs: an answer computed in one interval must
        # not be labelled with the next one.
        clock = clock_key(self.settings)
        # Set by the gate's token lookup (no or bad token: none, and the route answers 401).
        state: changes.Revalidation | None = scope.get("state", {}).get(_STATE_KEY)
        if if_none_match and state is not None:
            etag = etag_for(state, target, clock, english)
            # Not `*`: only the route knows whether there is anything (a 404 is no 304), and a
            # route with its own ETag answers for it.
            if etag.removeprefix("W/") in _tags(if_none_match):
                response = Response(status_code=304, headers=_cache_headers(etag))
                await response(scope, receive, send)
                return
        unsent = False  # a 200 turned into a 304 (for `*`): its body is dropped

        async def send_labelled(message: Message) -> None:
            nonlocal unsent
            if message["type"] == "http.response.start" and message["status"] == 200:
                response_headers = MutableHeaders(scope=message)
                if state is not None and "etag" not in response_headers:
                    etag = etag_for(state, target, clock, english)
                    if matches(if_none_match, etag):
                        unsent = True
                        message = _not_modified_start(etag)
                    else:
                        response_headers["ETag"] = etag
                        response_headers["Cache-Control"] = "no-cache"
                        response_headers.add_vary_header("Authorization")
                        response_headers.add_vary_header("Accept-Language")
            elif message["type"] == "http.response.body" and unsent:
                if message.get("more_body"):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app(scope, receive, send_labelled)
