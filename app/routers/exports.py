"""The issue ledger (问题台账): XLSX with thumbnails, CSV; the filters of the issue list."""

from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from app.deps import CurrentUser, SessionDep, SettingsDep, StorageDep
from app.models.base import utcnow
from app.models.issue import IssueStatus
from app.services import exports
from app.services.issue_list import IssueFilters

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def ledger_filters(
    status: Annotated[list[IssueStatus] | None, Query()] = None,
    category: str | None = None,
    org_unit: str | None = None,
    overdue: bool | None = None,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat")] = None,
    updated_since: datetime | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> IssueFilters:
    """The filters of GET /api/v1/issues."""
    return IssueFilters(status or [], category, org_unit, overdue, bbox, updated_since, q)


Filters = Annotated[IssueFilters, Depends(ledger_filters)]


def _attachment(suffix: str) -> str:
    name = f"问题台账-{utcnow().strftime('%Y%m%d')}.{suffix}"
    return f"attachment; filename=\"ledger.{suffix}\"; filename*=UTF-8''{quote(name)}"


@router.get("/ledger.xlsx", response_class=StreamingResponse)
def ledger_xlsx(
    filters: Filters,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    user: CurrentUser,
    images: bool = True,
) -> StreamingResponse:
    """One row per issue, Chinese headers, before/after thumbnails (none with images=false)."""
    batches = exports.ledger_batches(session, settings, user, filters, utcnow())
    ledger = exports.write_xlsx(batches, storage, images=images)
    headers = {"Content-Disposition": _attachment("xlsx"), "Content-Length": str(ledger.size)}
    return StreamingResponse(exports.sent_once(ledger.path), media_type=XLSX, headers=headers)


@router.get("/ledger.csv", response_class=StreamingResponse)
def ledger_csv(
    filters: Filters, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> StreamingResponse:
    """The same columns as CSV (no pictures), UTF-8 with BOM, streamed."""
    batches = exports.ledger_batches(session, settings, user, filters, utcnow())
    return StreamingResponse(
        exports.csv_chunks(batches),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": _attachment("csv")},
    )
