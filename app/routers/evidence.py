"""Evidence for auditors: the JSON, the streamed ZIP bundle and the before/after comparison."""

from fastapi import Response
from fastapi.responses import FileResponse, StreamingResponse

from app.deps import CurrentUser, EvidenceIssue, SessionDep, SettingsDep
from app.errors import Forbidden
from app.models.base import utcnow
from app.openapi import file_response, merge, problem_responses
from app.routers.api import ONE_ITEM_ERRORS, authenticated_router
from app.services import evidence as service
from app.services.comparison import comparison_jpeg

router = authenticated_router(prefix="/api/v1/issues/{issue_id}", tags=["evidence"])
# Evidence is for supervisors, auditors, admins and the reporter: others get 403.
ERRORS = problem_responses(Forbidden, *ONE_ITEM_ERRORS)


@router.get("/evidence", responses=ERRORS)
def evidence(issue: EvidenceIssue, session: SessionDep, user: CurrentUser) -> dict[str, object]:
    """The issue, every photo with hash, EXIF and flags, the events, and chain_valid."""
    return service.evidence(session, issue, user, utcnow())


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
def comparison(issue: EvidenceIssue, session: SessionDep, settings: SettingsDep) -> FileResponse:
    """The first before-photo and the latest after-photo side by side, captioned."""
    path = comparison_jpeg(session, settings, issue)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})
