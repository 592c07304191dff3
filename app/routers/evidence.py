"""Evidence for auditors: the JSON, the streamed ZIP bundle and the before/after comparison."""

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from app import etags
from app.deps import CurrentUser, English, EvidenceIssue, SessionDep, SettingsDep, StoreDep
from app.errors import Forbidden, NotFound
from app.models.base import utcnow
from app.openapi import file_response, merge, problem_responses
from app.routers.api import ONE_ITEM_ERRORS, authenticated_router
from app.services import evidence as service
from app.services.comparison import comparison_jpeg, comparison_of

router = authenticated_router(prefix="/api/v1/issues/{issue_id}", tags=["evidence"])
# Evidence is for supervisors, auditors, admins and the reporter: others get 403.
ERRORS = problem_responses(Forbidden, *ONE_ITEM_ERRORS)

REVALIDATE = {"Cache-Control": "no-cache", "Vary": "Authorization, Accept-Language"}


@router.get("/evidence", response_model=dict[str, object], responses=ERRORS)
def evidence(
    issue: EvidenceIssue,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    english: English,
) -> Response:
    """The issue, every photo with hash, EXIF and flags, the events, and chain_valid.

    The ETag is the hash of the body: the same tag is always the same bytes, and a 304 says
    that the copy the auditor holds is what the server would send now.
    """
    body = service.evidence(session, settings, issue, user, utcnow(), english=english)
    answer = JSONResponse(body, headers=REVALIDATE)
    etag = etags.content_etag(bytes(answer.body))
    answer.headers["ETag"] = etag
    return etags.not_modified(request, etag, REVALIDATE) or answer


@router.get(
    "/evidence.zip",
    response_class=Response,
    responses=merge(file_response("The evidence bundle, streamed", "application/zip"), ERRORS),
)
def evidence_zip(
    issue: EvidenceIssue, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> StreamingResponse:
    """manifest.json, events.json, originals/<sha256>.<ext>, comparison.jpg, README.txt."""
    chunks = service.bundle(session, settings, issue, user, utcnow())
    name = f"{issue.code}-evidence.zip"
    return StreamingResponse(
        chunks,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/comparison.jpg",
    response_class=Response,
    responses=merge(file_response("Before and after side by side", "image/jpeg"), ERRORS),
)
def comparison(
    issue: EvidenceIssue,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
) -> Response:
    """The first before-photo and the latest after-photo side by side, captioned."""
    chosen = comparison_of(session, issue)
    # Its photos are immutable; the captions give capture times in the zone's time.
    etag = etags.derived_etag("comparison", chosen.key, settings.timezone)
    headers = {"Cache-Control": "no-cache"}
    cached = etags.not_modified(request, etag, headers)
    if cached is not None:
        return cached  # without drawing it again
    key = comparison_jpeg(session, settings, issue, chosen)
    sent = etags.send_object(store, key, etag, "image/jpeg", headers)
    if sent is None:  # removed from the store meanwhile: drawn again at the next request
        raise NotFound("the comparison image is not stored")
    return sent
