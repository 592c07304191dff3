"""What a weekly 台账 adds to each ledger row: who rectified, when it was dispatched, the
rectified quantity, 立行立改, the photo flags as sentences, and the days overdue (a number).

Read per batch of the ledger (services/exports.py), two queries a batch: the photos that carry
flags, and which issues were reported already fixed.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from app.models import Issue, IssueEvent, Photo
from app.models.issue import IssueStatus
from app.models.photo import PhotoKind
from app.services import flag_text

KIND_NAMES = {PhotoKind.BEFORE: "整改前", PhotoKind.AFTER: "整改后", PhotoKind.VERIFICATION: "核查"}
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Extra:
    on_the_spot: bool
    photo_flags: str


def days_overdue(issue: Issue, now: datetime) -> float:
    """Days past the deadline: until now while it waits for a fix, else until the fix was
    submitted (0 when on time or without a deadline), to one decimal."""
    if issue.deadline_at is None:
        return 0.0
    if issue.status == IssueStatus.DISPATCHED:
        end = now
    elif issue.rectified_at is not None:
        end = issue.rectified_at
    else:
        return 0.0
    late = (end - issue.deadline_at).total_seconds()
    return round(late / DAY_SECONDS, 1) if late > 0 else 0.0


def extras(session: Session, issues: list[Issue]) -> dict[int, Extra]:
    ids = [i.id for i in issues if i.id is not None]
    spot = set(
        session.exec(
            select(IssueEvent.issue_id).where(
                col(IssueEvent.issue_id).in_(ids),
                IssueEvent.seq == 1,
                IssueEvent.to_status == IssueStatus.RECTIFIED,
            )
        )
    )
    flagged: dict[int, list[Photo]] = defaultdict(list)
    for photo in session.exec(
        select(Photo).where(col(Photo.issue_id).in_(ids)).order_by(col(Photo.id))
    ):
        if photo.flags:
            flagged[photo.issue_id].append(photo)
    return {
        i.id: Extra(i.id in spot, _sentences(i, flagged.get(i.id, [])))
        for i in issues
        if i.id is not None
    }


def _sentences(issue: Issue, photos: list[Photo]) -> str:
    """Each flagged photo's flags as Chinese sentences (flag_text), by photo kind, once each."""
    seen: set[str] = set()
    parts = []
    for photo in photos:
        facts = flag_text.facts_of(photo, issue.lat, issue.lon)
        for said in flag_text.describe(photo.flags, facts):
            text = f"{KIND_NAMES.get(PhotoKind(photo.kind), photo.kind)}：{said['text']}"
            if text not in seen:
                seen.add(text)
                parts.append(text)
    return "；".join(parts)
