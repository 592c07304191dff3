"""Open311 GeoReport v2 under /open311/v2 (XML and JSON, by the path's extension).

Errors answer as the spec says, a list of {code, description} with 400, 403 or 404, not as
problem+json. The api_key is a token of an `external` user (`gridproof open311 add-key`).
"""

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from app.deps import PhotoId, SessionDep, SettingsDep, SignerDep, StorageDep, StoreDep
from app.errors import AppError, NotFound, logger
from app.models import User
from app.models.base import utcnow
from app.routers.media import derivative_response
from app.services import open311
from app.services.open311_render import MEDIA_TYPES, Fmt, errors, render
from app.services.signing import PhotoLinks, SignedLink
from app.uploads import PhotoUploadRoute, spooled


class Open311Route(PhotoUploadRoute):
    """Media parts stream into storage like the JSON API's; errors take the spec's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def open311_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (AppError, RequestValidationError, HTTPException) as exc:
                return error_response(exc, request.scope.get("path_params", {}).get("fmt"))

        return open311_handler


def error_response(exc: Exception, fmt_text: str | None) -> Response:
    fmt = Fmt.JSON if fmt_text == Fmt.JSON else Fmt.XML
    if isinstance(exc, RequestValidationError):
        status = 400
        detail = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())[1:]))}: {e.get('msg', '')}" for e in exc.errors()
        )
        description = f"validation_error: {detail}"
    elif isinstance(exc, AppError):
        status = _STATUS.get(exc.status, 400 if exc.status < 500 else exc.status)
        description = f"{exc.code}: {exc.detail}"
    else:
        assert isinstance(exc, HTTPException)
        status = _STATUS.get(exc.status_code, 400 if exc.status_code < 500 else exc.status_code)
        description = str(exc.detail)
    if status >= 500:
        logger.error("Open311 error", exc_info=exc)
    return Response(errors(fmt, [(status, description)]), status, media_type=MEDIA_TYPES[fmt])


# The spec names 400, 403 and 404; a missing or wrong api_key is 403.
_STATUS = {401: 403, 403: 403, 404: 404}

# Every answer, errors included, is XML or JSON as the path's extension says.
_BOTH: dict[str, Any] = {"content": {"text/xml": {}, "application/json": {}}}
ANSWERS: dict[int | str, Any] = {
    200: {"description": "OK", **_BOTH},
    201: {"description": "Created", **_BOTH},
    400: {"description": "The spec's error list: bad input", **_BOTH},
    403: {"description": "The spec's error list: a missing or wrong api_key", **_BOTH},
    404: {"description": "The spec's error list: no such service or request", **_BOTH},
}
router = APIRouter(
    prefix="/open311/v2",
    tags=["open311"],
    route_class=Open311Route,
    default_response_class=Response,
    responses=ANSWERS,
)

ApiKey = Annotated[str | None, Query(description="an external system's api_key")]
Authorization = Annotated[str | None, Header(include_in_schema=False)]


def _answer(fmt: Fmt, data: Any, root: str, item: str = "", status: int = 200) -> Response:
    return Response(render(fmt, data, root, item), status, media_type=MEDIA_TYPES[fmt])


def _base_url(request: Request, settings: SettingsDep) -> str:
    return settings.public_base_url.rstrip("/") or str(request.base_url).rstrip("/")


def _key(api_key: str | None, authorization: str | None) -> str | None:
    if api_key:
        return api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


@router.get("/discovery.{fmt}")
def discovery(fmt: Fmt, request: Request, settings: SettingsDep) -> Response:
    """Service discovery: where this GeoReport v2 endpoint is and what it speaks."""
    return _answer(fmt, open311.discovery(_base_url(request, settings)), "discovery")


@router.get("/services.{fmt}")
def services(fmt: Fmt, session: SessionDep) -> Response:
    """One service per category."""
    return _answer(fmt, open311.services(session), "services", "service")


@router.get("/services/{service_code}.{fmt}")
def service_definition(service_code: str, fmt: Fmt, session: SessionDep) -> Response:
    """A service's attributes: the quantity, in the category's unit."""
    return _answer(fmt, open311.service_definition(session, service_code), "service_definition")


@router.post("/requests.{fmt}", status_code=201)
def create_request(
    fmt: Fmt,
    form: Annotated[open311.Open311Form, Form()],
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    authorization: Authorization = None,
    media: Annotated[list[UploadFile] | None, File(description="photos (v2.1 draft)")] = None,
) -> Response:
    """Report an issue (form-encoded, or multipart with `media` photos as evidence)."""
    user = open311.caller(session, _key(form.api_key, authorization))
    issue = open311.create_request(session, settings, storage, user, form, spooled(media or []))
    return _answer(fmt, open311.created(issue), "service_requests", "request", 201)


@router.get("/requests.{fmt}")
def list_requests(
    fmt: Fmt,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    signer: SignerDep,
    api_key: ApiKey = None,
    authorization: Authorization = None,
    service_request_id: Annotated[str | None, Query(max_length=4000)] = None,
    service_code: Annotated[str | None, Query(max_length=1000)] = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=open311.MAX_PAGE_SIZE)] = 50,
    extensions: bool = False,
) -> Response:
    """Service requests you may see: by ids, or by service, dates (≤ 90 days) and status."""
    user = open311.caller(session, _key(api_key, authorization))
    query = open311.RequestQuery(
        service_request_id, service_code, start_date, end_date, status,
        updated_after, updated_before, page, page_size, extensions,
    )  # fmt: skip
    now = utcnow()
    found = open311.find_requests(session, settings, user, query, now)
    links = signer.links(now, _base_url(request, settings))
    return _requests(fmt, session, settings, user, found, extensions, links)


def _requests(
    fmt: Fmt,
    session: SessionDep,
    settings: SettingsDep,
    user: User,
    found: list[Any],
    extensions: bool,
    links: PhotoLinks,
) -> Response:
    body = open311.service_requests(session, settings, user, found, links, extensions)
    return _answer(fmt, body, "service_requests", "request")


@router.get("/requests/{request_id}.{fmt}")
def get_request(
    request_id: str,
    fmt: Fmt,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    signer: SignerDep,
    api_key: ApiKey = None,
    authorization: Authorization = None,
    extensions: bool = False,
) -> Response:
    """One service request, by its id (the issue's code)."""
    user = open311.caller(session, _key(api_key, authorization))
    issue = open311.request_by_id(session, user, request_id)
    links = signer.links(utcnow(), _base_url(request, settings))
    return _requests(fmt, session, settings, user, [issue], extensions, links)


@router.get("/tokens/{token}.{fmt}")
def token(
    token: str,
    fmt: Fmt,
    session: SessionDep,
    api_key: ApiKey = None,
    authorization: Authorization = None,
) -> Response:
    """The service_request_id of a token."""
    user = open311.caller(session, _key(api_key, authorization))
    issue = open311.request_by_token(session, user, token)
    return _answer(fmt, open311.token_answer(issue), "service_requests", "request")


@router.get(
    "/media/{photo_id}/{size}.jpg",
    responses={200: {"description": "The photo", "content": {"image/jpeg": {}}}},
)
def media(
    photo_id: PhotoId,
    size: str,
    expires: int,
    sig: Annotated[str, Query(max_length=200)],
    request: Request,
    session: SessionDep,
    store: StoreDep,
    signer: SignerDep,
) -> Response:
    """The media_url of earlier releases: the same signed link as /media/photos/… (no token)."""
    if size not in ("large", "thumb"):
        raise NotFound(f"No size {size!r}", zh=f"没有尺寸 {size!r}")
    link = SignedLink(photo_id, size, expires, sig)
    return derivative_response(request, session, store, signer, link)


@router.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
def unknown(rest: str) -> Response:
    """Anything else under /open311/v2 is the spec's 404."""
    raise NotFound(f"没有 /open311/v2/{rest}")
