"""The issue ledger (问题台账): XLSX with thumbnails, CSV; the filters of the issue list."""

from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Query
from fastapi.responses import StreamingResponse

from app.config import Settings
from app.deps import CurrentUser, IssueFiltersDep, SessionDep, SettingsDep, StorageDep
from app.errors import TooManyRequests, ValidationFailed
from app.models.base import utcnow
from app.openapi import file_response, merge, problem_responses
from app.routers.api import authenticated_router
from app.services import export_slots, exports, ledger_summary
from app.services.periods import Chosen, NamedPeriod

router = authenticated_router(prefix="/api/v1/exports", tags=["exports"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The filters of the issue list: a bbox, an org unit or a date that cannot be used is 422.
ERRORS = problem_responses(ValidationFailed, TooManyRequests)


async def get_ledger_period(
    settings: SettingsDep,
    period: Annotated[NamedPeriod | None, Query(description="本周, 上周, 本月, 上月")] = None,
    week: Annotated[str | None, Query(description="an ISO week, 2026-W49")] = None,
    from_: Annotated[str | None, Query(alias="from", description="a date or datetime")] = None,
    to: Annotated[str | None, Query(description="a date (included whole) or datetime")] = None,
) -> Chosen | None:
    """The issues reported in this period (none given: every issue), as /stats reads it."""
    return ledger_summary.ledger_period(period, week, from_, to, settings, utcnow())


LedgerPeriod = Annotated[Chosen | None, Depends(get_ledger_period)]


def _attachment(suffix: str, settings: Settings, now: datetime) -> str:
    name = exports.ledger_filename(suffix, settings, now)
    return f"attachment; filename=\"ledger.{suffix}\"; filename*=UTF-8''{quote(name)}"


@router.get(
    "/ledger.xlsx",
    response_class=StreamingResponse,
    responses=merge(file_response("The ledger as an XLSX workbook", XLSX), ERRORS),
)
def ledger_xlsx(
    filters: IssueFiltersDep,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    user: CurrentUser,
    chosen: LedgerPeriod,
    images: bool = True,
) -> StreamingResponse:
    """One row per issue, Chinese headers, before/after thumbnails (none with images=false),
    and a summary sheet per office for the period (this week when none is given)."""
    now = utcnow()
    period = chosen.period if chosen else None
    with export_slots.released_on_error(export_slots.acquire(settings, user)) as slot:
        batches = exports.ledger_batches(session, settings, user, filters, now, period=period)
        summary = ledger_summary.summary(session, settings, user, chosen, now)
        ledger = exports.write_xlsx(batches, storage, images=images, summary=summary)
    disposition = _attachment("xlsx", settings, now)
    headers = {"Content-Disposition": disposition, "Content-Length": str(ledger.size)}
    chunks = export_slots.Held(slot, exports.sent_once(ledger.path))
    return StreamingResponse(chunks, media_type=XLSX, headers=headers)


@router.get(
    "/ledger.csv",
    response_class=StreamingResponse,
    responses=merge(file_response("The ledger as CSV, UTF-8 with BOM", "text/csv"), ERRORS),
)
def ledger_csv(
    filters: IssueFiltersDep,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    chosen: LedgerPeriod,
) -> StreamingResponse:
    """The same columns as CSV (no pictures), UTF-8 with BOM, streamed."""
    now = utcnow()
    period = chosen.period if chosen else None
    with export_slots.released_on_error(export_slots.acquire(settings, user)) as slot:
        batches = exports.ledger_batches(session, settings, user, filters, now, period=period)
    return StreamingResponse(
        export_slots.Held(slot, exports.csv_chunks(batches)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": _attachment("csv", settings, now)},
    )
