"""Evidence for auditors: the JSON, the streamed ZIP bundle and the before/after comparison."""

from fastapi import APIRouter
from fastapi.responses import FileResponse, StreamingResponse

from app.deps import CurrentUser, EvidenceIssue, SessionDep, SettingsDep
from app.models.base import utcnow
from app.services import evidence as service
from app.services.comparison import comparison_jpeg

router = APIRouter(prefix="/api/v1/issues/{issue_id}", tags=["evidence"])


@router.get("/evidence")
def evidence(issue: EvidenceIssue, session: SessionDep, user: CurrentUser) -> dict[str, object]:
    """The issue, every photo with hash, EXIF and flags, the events, and chain_valid."""
    return service.evidence(session, issue, user, utcnow())


@router.get("/evidence.zip")
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


@router.get("/comparison.jpg")
def comparison(issue: EvidenceIssue, session: SessionDep, settings: SettingsDep) -> FileResponse:
    """The first before-photo and the latest after-photo side by side, captioned."""
    path = comparison_jpeg(session, settings, issue)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})
