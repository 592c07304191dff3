"""The auditor's search: issues within the caller's scope by code or text, office, the period
they were reported in, and a photo flag; newest first, in a compact shape for the /audit page."""

from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import String, cast, exists
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import Forbidden, ValidationFailed
from app.models import Issue, OrgUnit, Photo, User
from app.services import flag_text
from app.services.issue_list import IssueFilters, filtered
from app.services.permissions import EVIDENCE_READERS

MAX_PERIOD = timedelta(days=366)


def search(
    session: Session,
    settings: Settings,
    user: User,
    *,
    q: str | None = None,
    org_unit: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    flag: str | None = None,
    limit: int = 50,
    now: datetime,
) -> list[dict[str, Any]]:
    """At most `limit` issues, newest report first (a period's days in the zone's time)."""
    if user.role not in EVIDENCE_READERS:
        raise Forbidden("the audit search is for supervisors, auditors and admins")
    if date_from and date_to and date_from > date_to:
        raise ValidationFailed("from must not be after to", field="from")
    if date_from and date_to and date_to - date_from > MAX_PERIOD:
        raise ValidationFailed("a period is at most a year", field="to")
    if flag is not None and flag not in flag_text.SENTENCES:
        raise ValidationFailed(f"unknown flag {flag!r}", field="flag")
    query = filtered(session, user, IssueFilters(q=q or None, org_unit=org_unit or None), now)
    if date_from:
        start = datetime.combine(date_from, time(), settings.zone)
        query = query.where(col(Issue.reported_at) >= start)
    if date_to:
        end = datetime.combine(date_to + timedelta(days=1), time(), settings.zone)
        query = query.where(col(Issue.reported_at) < end)
    if flag:
        # Flags are JSON lists of known codes (checked above): their text holds "code".
        flagged = cast(Photo.flags, String).like(f'%"{flag}"%')
        query = query.where(exists().where(col(Photo.issue_id) == Issue.id, flagged))
    ordered = query.order_by(col(Issue.reported_at).desc(), col(Issue.id).desc()).limit(limit)
    issues = list(session.exec(ordered))
    ids = {issue.org_unit_id for issue in issues}
    units = select(OrgUnit.id, OrgUnit.code).where(col(OrgUnit.id).in_(ids))
    offices = dict(session.exec(units).all())
    return [_compact(issue, offices[issue.org_unit_id]) for issue in issues]


def _compact(issue: Issue, office: str) -> dict[str, Any]:
    return {
        "id": issue.id,
        "code": issue.code,
        "category": issue.category_code,
        "status": issue.status,
        "org_unit": office,
        "description": issue.description,
        "address": issue.address,
        "reported_at": issue.reported_at.isoformat(),
    }
