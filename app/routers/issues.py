"""Issues: report, list, read, add photos, act on the state machine, read the audit trail."""

from typing import Annotated, Literal

from fastapi import File, Form, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from app import etags
from app.deps import (
    CurrentIssue,
    CurrentUser,
    English,
    EvidenceIssue,
    IdempotencyKey,
    IfMatchVersion,
    IssueFiltersDep,
    IssueId,
    PhotoLinksDep,
    SessionDep,
    SettingsDep,
    SignerDep,
    StorageDep,
)
from app.errors import (
    AfterPhotoRequired,
    BadRequest,
    Forbidden,
    InvalidTransition,
    LocationRequired,
    NotFound,
    OverrideNoteRequired,
    PhotoNotAllowed,
    PhotoTooLarge,
    PreconditionRequired,
    ValidationFailed,
    VersionConflict,
)
from app.models.base import utcnow
from app.models.event import IssueEventPublic
from app.models.geo import Crs
from app.models.issue import (
    IssueCompactPage,
    IssuePage,
    IssuePublic,
    IssueReport,
    IssueView,
    PhotoForm,
    TransitionRequest,
)
from app.models.photo import PhotoPublic
from app.openapi import problem_responses
from app.responses import answer_json, model_json
from app.routers.api import ONE_ITEM_ERRORS, UPLOAD_ERRORS, authenticated_router
from app.services import audit, reporting
from app.services import issues as service
from app.services.issue_compact import compact_page
from app.services.issue_list import MAX_GEOJSON_LIMIT, MAX_LIMIT, by_deadline, list_issues
from app.services.present import (
    events_public,
    feature_collection,
    issue_answers,
    issue_public,
    photos_public,
)
from app.uploads import PhotoUploadRoute, spooled

# The photo routes' file parts stream into storage (app/uploads.py); the others read no form.
router = authenticated_router(
    prefix="/api/v1/issues", tags=["issues"], route_class=PhotoUploadRoute
)

CrsParam = Annotated[Crs, Query(description="coordinate system of the answer: wgs84, gcj02, bd09")]
GEOJSON = {
    "type": "object",
    "required": ["type", "features"],
    "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {"type": "array", "items": {"type": "object"}},
        "next_cursor": {"type": ["string", "null"]},
        "has_more": {"type": "boolean"},
    },
}


def _created(body: object, replayed: bool, location: str | None = None) -> JSONResponse:
    response = JSONResponse(body, status_code=201)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if location:
        response.headers["Location"] = location
    return response


@router.post(
    "",
    status_code=201,
    response_model=IssuePublic,
    responses=problem_responses(Forbidden, LocationRequired, *UPLOAD_ERRORS),
)
def report_issue(
    form: Annotated[IssueReport, Form()],
    photos: Annotated[list[UploadFile], File(description="1–10 before-photos")],
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    user: CurrentUser,
    english: English,
    links: PhotoLinksDep,
    idempotency_key: IdempotencyKey = None,
    after_photos: Annotated[list[UploadFile] | None, File(description="0–10 after-photos")] = None,
) -> JSONResponse:
    """Report a problem with before-photos (and after-photos when fixed on the spot)."""
    uploads = reporting.Uploads({"photos": spooled(photos)})
    if after_photos:
        uploads.fields["after_photos"] = spooled(after_photos)
    caller = reporting.Caller(session, settings, storage, user)
    issue, replayed = reporting.report_issue(caller, form, uploads, idempotency_key=idempotency_key)
    body = issue_public(session, issue, user, utcnow(), links=links, english=english)
    return _created(body.model_dump(mode="json"), replayed, f"/api/v1/issues/{issue.id}")


@router.get(
    "",
    response_model=IssuePage | IssueCompactPage,
    responses=problem_responses(ValidationFailed),
)
def list_issues_route(
    session: SessionDep,
    user: CurrentUser,
    filters: IssueFiltersDep,
    english: English,
    links: PhotoLinksDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: str | None = None,
    crs: CrsParam = Crs.WGS84,
    view: Annotated[IssueView, Query(description="full, or compact for dashboards")] = (
        IssueView.FULL
    ),
    sort: Annotated[
        Literal["changes", "deadline"],
        Query(description="changes: the change feed (default); deadline: nearest first"),
    ] = "changes",
) -> Response:
    """Issues you may see, oldest change first (or nearest deadline); follow `next_cursor`."""
    now = utcnow()
    pages = by_deadline if sort == "deadline" else list_issues
    if view == IssueView.COMPACT:
        return model_json(compact_page(session, user, filters, now, limit, cursor, crs, pages))
    page, next_cursor, has_more = pages(session, user, filters, now, limit, cursor)
    items = issue_answers(session, page, user, now, crs, links=links, english=english)
    return answer_json({"items": items, "next_cursor": next_cursor, "has_more": has_more})


@router.get(
    ".geojson",
    response_class=Response,
    responses={
        200: {
            "description": "An RFC 7946 FeatureCollection, with next_cursor and has_more",
            "content": {"application/geo+json": {"schema": GEOJSON}},
        },
        **problem_responses(ValidationFailed),
    },
)
def issues_geojson(
    session: SessionDep,
    user: CurrentUser,
    filters: IssueFiltersDep,
    limit: Annotated[int, Query(ge=1, le=MAX_GEOJSON_LIMIT)] = 1000,
    cursor: str | None = None,
    crs: CrsParam = Crs.WGS84,
) -> JSONResponse:
    """RFC 7946 FeatureCollection of the filtered issues ([lon, lat]; WGS-84 by default)."""
    now = utcnow()
    page, next_cursor, has_more = list_issues(session, user, filters, now, limit, cursor)
    body = feature_collection(session, page, now, crs)
    body |= {"next_cursor": next_cursor, "has_more": has_more}
    return JSONResponse(body, media_type="application/geo+json")


@router.get(
    "/{issue_id}", response_model=IssuePublic, responses=problem_responses(*ONE_ITEM_ERRORS)
)
def get_issue(
    issue: CurrentIssue,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    english: English,
    signer: SignerDep,
    crs: CrsParam = Crs.WGS84,
) -> Response:
    """One issue; answers If-None-Match with 304 while its version is unchanged."""
    etag = etags.issue_etag(issue.version)
    vary = "Authorization, Accept-Language"
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": vary}
    now = utcnow()
    # The tag is the version alone: a 304 only while no copy can hold expired photo links.
    fresh = signer.fresh_since(issue.updated_at, now)
    cached = etags.not_modified(request, etag, headers) if fresh else None
    answer = issue_public(session, issue, user, now, crs, links=signer.links(now), english=english)
    return cached or model_json(answer, headers=headers)


@router.post(
    "/{issue_id}/photos",
    status_code=201,
    response_model=list[PhotoPublic],
    responses=problem_responses(Forbidden, NotFound, PhotoNotAllowed, *UPLOAD_ERRORS),
)
def add_photos(
    issue_id: IssueId,
    form: Annotated[PhotoForm, Form()],
    files: Annotated[list[UploadFile], File(description="1–10 photos")],
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    user: CurrentUser,
    english: English,
    links: PhotoLinksDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Add before, after or verification photos to an issue."""
    caller = reporting.Caller(session, settings, storage, user)
    photos, replayed = reporting.add_photos(
        caller,
        issue_id,
        form,
        reporting.Uploads({"files": spooled(files)}),
        idempotency_key=idempotency_key,
    )
    publics = photos_public(session, photos, links=links, english=english)
    body = [p.model_dump(mode="json") for p in publics]
    return _created(body, replayed)


@router.post(
    "/{issue_id}/transitions",
    response_model=IssuePublic,
    responses=problem_responses(
        BadRequest,
        Forbidden,
        NotFound,
        InvalidTransition,
        AfterPhotoRequired,
        VersionConflict,
        PhotoTooLarge,
        ValidationFailed,
        OverrideNoteRequired,
        PreconditionRequired,
    ),
)
def transition(
    issue_id: IssueId,
    body: TransitionRequest,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    version: IfMatchVersion,
    english: English,
    links: PhotoLinksDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Move the issue along the state machine; needs If-Match with its current version."""
    issue = service.apply_transition(
        session, settings, user, issue_id, body, version=version, idempotency_key=idempotency_key
    )
    public = issue_public(session, issue, user, utcnow(), links=links, english=english)
    return model_json(public, headers={"ETag": etags.issue_etag(issue.version)})


@router.get("/{issue_id}/events", responses=problem_responses(Forbidden, *ONE_ITEM_ERRORS))
def events(issue: EvidenceIssue, session: SessionDep) -> list[IssueEventPublic]:
    """The issue's audit trail, a SHA-256 hash chain (see the README for the canonical form)."""
    assert issue.id is not None
    return events_public(audit.events_of(session, issue.id))
