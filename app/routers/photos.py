"""Photo metadata, derivatives and originals: immutable, cacheable forever."""

from fastapi import Request, Response
from sqlmodel import Session

from app import etags
from app.deps import CurrentUser, English, PhotoId, PhotoLinksDep, SessionDep, StoreDep
from app.errors import Forbidden, NotFound, OriginalCorrupted
from app.models import Issue, Photo, User
from app.models.photo import PhotoPublic
from app.openapi import file_response, merge, problem_responses
from app.routers.api import ONE_ITEM_ERRORS, STORE_ERRORS, authenticated_router
from app.services.objects import ObjectStore, derivative_key
from app.services.permissions import get_visible, may_read_evidence
from app.services.photos import CONTENT_TYPES, EXTENSIONS, format_of_content_type
from app.services.present import photos_public
from app.services.verification import verified_original

router = authenticated_router(prefix="/api/v1/photos", tags=["photos"])
DERIVATIVE = merge(
    file_response("JPEG", "image/jpeg"), problem_responses(*ONE_ITEM_ERRORS, *STORE_ERRORS)
)
ORIGINAL = merge(
    file_response("The uploaded bytes, with their own type", *CONTENT_TYPES.values()),
    problem_responses(Forbidden, OriginalCorrupted, *ONE_ITEM_ERRORS, *STORE_ERRORS),
)

IMMUTABLE = "private, max-age=31536000, immutable"


def _visible_photo(session: Session, photo_id: int, user: User) -> tuple[Photo, Issue]:
    photo = session.get(Photo, photo_id)
    if photo is None:
        raise NotFound(f"no photo {photo_id}")
    try:
        issue = get_visible(session, photo.issue_id, user)
    except NotFound:
        raise NotFound(f"no photo {photo_id}") from None
    return photo, issue


def _file(
    request: Request, store: ObjectStore, key: str, etag: str, media_type: str, **headers: str
) -> Response:
    common = {"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"}
    cached = etags.not_modified(request, etag, common)
    if cached is not None:
        return cached
    sent = etags.send_object(store, key, etag, media_type, common | headers)
    if sent is None:
        raise NotFound("the stored file is missing; run `gridproof verify`")
    return sent


@router.get("/{photo_id}", responses=problem_responses(*ONE_ITEM_ERRORS))
def photo(
    photo_id: PhotoId,
    session: SessionDep,
    user: CurrentUser,
    english: English,
    links: PhotoLinksDep,
) -> PhotoPublic:
    """A photo's metadata: hash, EXIF, location, flags (and their sentences) and URLs."""
    row, _issue = _visible_photo(session, photo_id, user)
    return photos_public(session, [row], links=links, english=english)[0]


@router.get("/{photo_id}/thumb", response_class=Response, responses=DERIVATIVE)
def thumb(
    photo_id: PhotoId, request: Request, session: SessionDep, store: StoreDep, user: CurrentUser
) -> Response:
    """JPEG, upright, longest side ≤ 320 px, no EXIF."""
    row, _issue = _visible_photo(session, photo_id, user)
    key = derivative_key(row.sha256, "thumb")
    return _file(request, store, key, etags.photo_etag(row.sha256, "thumb"), "image/jpeg")


@router.get("/{photo_id}/large", response_class=Response, responses=DERIVATIVE)
def large(
    photo_id: PhotoId, request: Request, session: SessionDep, store: StoreDep, user: CurrentUser
) -> Response:
    """JPEG, upright, longest side ≤ 1600 px, no EXIF."""
    row, _issue = _visible_photo(session, photo_id, user)
    key = derivative_key(row.sha256, "large")
    return _file(request, store, key, etags.photo_etag(row.sha256, "large"), "image/jpeg")


@router.get("/{photo_id}/original", response_class=Response, responses=ORIGINAL)
def original(
    photo_id: PhotoId, request: Request, session: SessionDep, store: StoreDep, user: CurrentUser
) -> Response:
    """The uploaded bytes, unchanged (supervisors, auditors, admins, the reporter)."""
    row, issue = _visible_photo(session, photo_id, user)
    if not may_read_evidence(user, issue):
        raise Forbidden("Originals are for supervisors, auditors, admins and the reporter")
    name = f"{issue.code}-{row.id}.{EXTENSIONS[format_of_content_type(row.content_type)]}"
    return _file(
        request,
        store,
        verified_original(store, row),
        etags.photo_etag(row.sha256),
        row.content_type,
        **{"Content-Disposition": f'attachment; filename="{name}"'},
    )
